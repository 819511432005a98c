//! Paid requests: sign a voucher for the exact request bytes, send it to the
//! provider, check the receipt of the answer (plain or streamed) and, for a
//! service that registered a proof method, the proof the broker serves,
//! record them, and acknowledge good receipts. Requests to one provider run concurrently;
//! the book's ticket says which cumulative each voucher carries and how its
//! receipt's `owed` is checked (crate::book explains the epochs).

use crate::{
    ClientError,
    book::{Book, Ticket, Verdict},
    checks::{Expected, ProofSeen, check_receipt},
};
use tracing::Instrument;
mod ack;
mod quote;
pub use ack::AckPolicy;
pub use quote::{Taken as TakenQuote, fetch as fetch_quote};

use alloy_primitives::utils::Keccak256;
use bytes::Bytes;
use futures::Stream;
use serde::Serialize;
use std::{
    collections::HashMap,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};
use tokio::sync::{mpsc, oneshot};
use zg_core::{
    Address, B128, B256, Domain, ErrorCode, Evidence, Nonce, PaymentHeaders, Service, SigningKey,
    U256, Verifiability, Voucher,
    headers::{self, SignedReceipt},
    keccak256, proof_digest, request_digest,
    wire::routes,
};

/// A receipt that passed every check and was paid.
#[derive(Debug, Clone, Serialize)]
pub struct PaidReceipt {
    /// Row in the book.
    pub id: i64,
    pub provider: Address,
    pub fee: U256,
    pub owed: U256,
    pub signed: SignedReceipt,
}

/// A complete (non-streamed) answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    /// The broker's id of the request (`X-ZG-Request-Id`), by which it
    /// serves the receipt and the proof.
    pub request_id: Option<String>,
    pub body: Bytes,
    /// The answer came; whether its receipt passed is separate.
    pub receipt: Result<PaidReceipt, ClientError>,
}

/// A streamed answer: the body as it comes, and the receipt once it is over.
pub struct StreamAnswer {
    pub status: u16,
    pub content_type: Option<String>,
    pub request_id: String,
    pub body: BodyStream,
    pub receipt: oneshot::Receiver<Result<PaidReceipt, ClientError>>,
}

/// The body of a streamed answer, chunk by chunk, unchanged.
pub struct BodyStream(mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl BodyStream {
    /// A body fed through the returned sender (a caller that rewrites
    /// another stream's chunks on their way).
    pub fn channel() -> (Self, mpsc::Sender<Result<Bytes, std::io::Error>>) {
        let (tx, rx) = mpsc::channel(64);
        (Self(rx), tx)
    }
}

impl Stream for BodyStream {
    type Item = Result<Bytes, std::io::Error>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// Signs, sends and checks paid requests for one user.
#[derive(Clone)]
pub struct Payer {
    inner: Arc<Inner>,
}

struct Inner {
    key: SigningKey,
    user: Address,
    domain: Domain,
    http: reqwest::Client,
    book: Book,
    ack: AckPolicy,
    /// Per provider, the newest good receipt not yet acknowledged and when
    /// to acknowledge it if no request comes first (`AckPolicy::WhenIdle`).
    idle: std::sync::Mutex<HashMap<Address, ack::IdleAck>>,
    /// Parsed request URLs by service URL, then path.
    urls: std::sync::Mutex<HashMap<String, HashMap<String, reqwest::Url>>>,
    /// The newest quote of each service asked.
    quotes: quote::Quotes,
}

impl Payer {
    /// `key` signs the vouchers: the user's own key, or one the user
    /// delegated on chain with `setVoucherSigner`.
    pub fn new(key: SigningKey, domain: Domain, book: Book, ack: AckPolicy) -> Self {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .build()
            .unwrap_or_default();
        Self {
            inner: Arc::new(Inner {
                user: book.user(),
                key,
                domain,
                http,
                book,
                ack,
                idle: Default::default(),
                urls: Default::default(),
                quotes: Default::default(),
            }),
        }
    }

    pub fn user(&self) -> Address {
        self.inner.user
    }

    /// The address of the key that signs vouchers (the user, or its delegate).
    pub fn signer_address(&self) -> Address {
        self.inner.key.address()
    }

    pub fn book(&self) -> &Book {
        &self.inner.book
    }

    /// The key that signs vouchers; it also signs the user's fine-tuning
    /// orders, so the content key of a job is sealed to it.
    pub fn signing_key(&self) -> &SigningKey {
        &self.inner.key
    }

    /// The headers of a request for the user's account statement at
    /// `provider`, signed now with the voucher key.
    pub fn statement_request(&self, provider: Address) -> [(&'static str, String); 2] {
        zg_core::StatementRequest::now(self.inner.user, provider)
            .headers(&self.inner.key, &self.inner.domain)
    }

    pub fn domain(&self) -> Domain {
        self.inner.domain
    }

    /// The quote a request to `service` would go out under now (`None`
    /// when its broker serves no quotes): held, or asked for.
    pub async fn quote(&self, service: &Service) -> Result<Option<TakenQuote>, ClientError> {
        self.inner
            .quotes
            .take(&self.inner.http, &self.inner.domain, service)
            .await
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// Sends `body` to `service` at `path` and reads the whole answer.
    pub async fn send(
        &self,
        service: &Service,
        path: &str,
        body: Bytes,
    ) -> Result<Answer, ClientError> {
        let (ticket, posted) = self.begin_and_post(service, path, body).await?;
        let response = posted.response;
        let status = response.status().as_u16();
        let content_type = content_type(&response);
        let receipt_header = response
            .headers()
            .get(headers::RECEIPT)
            .map(|v| v.to_str().map(str::to_owned));
        let request_id = request_id(&response);
        let body = response
            .bytes()
            .await
            .map_err(|e| unreachable(service, e))?;
        let receipt = match receipt_header {
            Some(Ok(value)) => match SignedReceipt::from_header(&value) {
                Ok(signed) => {
                    let answered = Answered {
                        request_id: request_id.clone(),
                        quoted: posted.quoted,
                        nonce: posted.nonce,
                        request_digest: posted.digest,
                        request: posted.body,
                        response_digest: keccak256(&body),
                        response: body.clone(),
                    };
                    self.conclude(ticket, service, signed, answered).await
                }
                Err(e) => Err(missing(service, e.to_string())),
            },
            Some(Err(_)) => Err(missing(service, "X-ZG-Receipt is not text".into())),
            None => Err(missing(
                service,
                "the answer has no X-ZG-Receipt header".into(),
            )),
        };
        Ok(Answer {
            status,
            content_type,
            request_id,
            body,
            receipt,
        })
    }

    /// Sends a streaming request. Returns once the first chunk of the answer
    /// came (so a caller can still fail over before that); the receipt is
    /// fetched and checked when the stream ends, even if the reader left.
    pub async fn send_stream(
        &self,
        service: &Service,
        path: &str,
        body: Bytes,
    ) -> Result<StreamAnswer, ClientError> {
        let (ticket, posted) = self.begin_and_post(service, path, body).await?;
        let mut response = posted.response;
        let status = response.status().as_u16();
        let content_type = content_type(&response);
        let request_id = request_id(&response)
            .ok_or_else(|| missing(service, "the stream has no X-ZG-Request-Id header".into()))?;
        let first = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => {
                return Err(unreachable_msg(
                    service,
                    "the stream ended before its first byte",
                ));
            }
            Err(e) => return Err(unreachable(service, e)),
        };
        let (tx, rx) = mpsc::channel(64);
        let (done_tx, done_rx) = oneshot::channel();
        let payer = self.clone();
        let service = service.clone();
        let id = request_id.clone();
        // The evidence of a proof service's answer holds the whole body.
        let mut kept = proof_method(&service).map(|_| Vec::new());
        tokio::spawn(async move {
            let mut hasher = Keccak256::new();
            hasher.update(&first);
            if let Some(kept) = &mut kept {
                kept.extend_from_slice(&first);
            }
            // A reader that left does not stop the reading: the receipt covers the whole body.
            let _ = tx.send(Ok(first)).await;
            loop {
                match response.chunk().await {
                    Ok(Some(chunk)) => {
                        hasher.update(&chunk);
                        if let Some(kept) = &mut kept {
                            kept.extend_from_slice(&chunk);
                        }
                        let _ = tx.send(Ok(chunk)).await;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                        break;
                    }
                }
            }
            drop(tx);
            let outcome = match payer.fetch_receipt(&service, &id).await {
                Ok(signed) => {
                    let answered = Answered {
                        request_id: Some(id),
                        quoted: posted.quoted,
                        nonce: posted.nonce,
                        request_digest: posted.digest,
                        request: posted.body,
                        response_digest: hasher.finalize(),
                        response: kept.map(Bytes::from).unwrap_or_default(),
                    };
                    payer.conclude(ticket, &service, signed, answered).await
                }
                Err(e) => Err(e),
            };
            let _ = done_tx.send(outcome);
        });
        Ok(StreamAnswer {
            status,
            content_type,
            request_id,
            body: BodyStream(rx),
            receipt: done_rx,
        })
    }

    /// Begins a request and posts it. When the provider refuses the voucher
    /// for being too far below what it is owed (`credit_exceeded`: a long
    /// epoch of costly requests), closes the epoch and tries once more with
    /// a voucher for the whole tally, once the epoch's requests are done.
    async fn begin_and_post(
        &self,
        service: &Service,
        path: &str,
        body: Bytes,
    ) -> Result<(Ticket, Posted), ClientError> {
        let ticket = self.inner.book.begin(service.provider).await?;
        let mut sent = self.post(&ticket, service, path, body.clone()).await;
        if let Err(ClientError::Refused {
            code: Some(ErrorCode::QuoteInvalid),
            ..
        }) = sent
        {
            // The quote expired on its way (or the broker's key changed):
            // take a new one and send once more.
            self.inner.quotes.forget(service);
            sent = self.post(&ticket, service, path, body.clone()).await;
        }
        match sent {
            Err(ClientError::Refused {
                code: Some(ErrorCode::CreditExceeded),
                ..
            }) => {
                ticket.close_epoch();
                drop(ticket);
                let ticket = self.inner.book.begin(service.provider).await?;
                let posted = self.post(&ticket, service, path, body).await?;
                Ok((ticket, posted))
            }
            sent => sent.map(|posted| (ticket, posted)),
        }
    }

    /// Signs the voucher (cumulative = every fee of earlier good receipts)
    /// and posts the request; a refusal or an unreachable provider is an error.
    async fn post(
        &self,
        ticket: &Ticket,
        service: &Service,
        path: &str,
        body: Bytes,
    ) -> Result<Posted, ClientError> {
        let nonce = Nonce::random();
        let digest = request_digest(&nonce, &body);
        let voucher = Voucher {
            user: self.inner.user,
            provider: service.provider,
            cumulative: ticket.cumulative(),
            request_digest: digest,
        };
        let payment = PaymentHeaders {
            user: self.inner.user,
            cumulative: ticket.cumulative(),
            nonce,
            signature: voucher.sign(&self.inner.key, &self.inner.domain),
        };
        let span = tracing::debug_span!("paid_request", user = %self.inner.user, provider = %service.provider, service = %service.name);
        let quote = self.quote(service).await?;
        let mut request = self
            .inner
            .http
            .post(self.url(service, path)?)
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(q) = &quote {
            request = request.header(headers::QUOTE, q.header.as_str());
        }
        for (name, value) in payment.encode() {
            request = request.header(name, value);
        }
        let response = request
            .send()
            .instrument(span.clone())
            .await
            .map_err(|e| unreachable(service, e))?;
        if !response.status().is_success() {
            return Err(refused(service.provider, response).instrument(span).await);
        }
        let quoted = quote.map(|q| {
            // The body is read for max_tokens only when a tier depends on it.
            let by_output = q.quote.tiers.iter().any(|t| t.min_output_tokens > 0);
            let asked = by_output.then(|| quote::asked_output(&body)).flatten();
            let requested = q.quote.requested_output(asked);
            (q.quote, requested)
        });
        Ok(Posted {
            response,
            nonce,
            digest,
            body,
            quoted,
        })
    }

    /// Ends an answer that came with a receipt: fetches its proof if the
    /// service registered a proof method, checks the receipt, records it
    /// (with the answer's evidence when there is a proof), acknowledges.
    async fn conclude(
        &self,
        ticket: Ticket,
        service: &Service,
        signed: SignedReceipt,
        answered: Answered,
    ) -> Result<PaidReceipt, ClientError> {
        let proof = match (proof_method(service), &answered.request_id) {
            (None, _) => None,
            (Some(_), Some(id)) => Some(self.fetch_proof(service, id).await),
            (Some(_), None) => Some(Err("the answer has no X-ZG-Request-Id header".to_owned())),
        };
        let (request_digest, response_digest) = (answered.request_digest, answered.response_digest);
        let quoted = answered.quoted.clone();
        let missing;
        let (seen, evidence) = match proof {
            None => (ProofSeen::NotAsked, None),
            Some(Ok(proof)) => (
                ProofSeen::Got(proof_digest(&proof)),
                answered.evidence(&signed, proof),
            ),
            Some(Err(why)) => {
                missing = why;
                (ProofSeen::Missing(&missing), None)
            }
        };
        let expected = Expected {
            user: self.inner.user,
            service,
            request_digest,
            response_digest,
            owed_before: ticket.owed_before(),
            proof: seen,
            quote: quoted.as_ref().map(|(q, asked)| (q, *asked)),
        };
        self.accept_receipt(ticket, service, signed, &expected, evidence)
            .await
    }

    /// The proof of model the broker keeps for request `id`.
    async fn fetch_proof(&self, service: &Service, id: &str) -> Result<Bytes, String> {
        let path = routes::proof(id);
        let response = self
            .inner
            .http
            .get(endpoint(&service.url, &path))
            .send()
            .await
            .map_err(|e| format!("GET {path} failed: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("GET {path} answered HTTP {status}"));
        }
        response
            .bytes()
            .await
            .map_err(|e| format!("GET {path}: reading the proof failed: {e}"))
    }

    /// Checks the receipt, records it (paid, or refused as evidence), ends
    /// the request, then acknowledges as the policy says.
    async fn accept_receipt(
        &self,
        ticket: Ticket,
        service: &Service,
        signed: SignedReceipt,
        expected: &Expected<'_>,
        evidence: Option<Evidence>,
    ) -> Result<PaidReceipt, ClientError> {
        let book = &self.inner.book;
        match check_receipt(&signed, expected, &self.inner.domain) {
            Ok(fee) => {
                let (id, owed) = book
                    .record(
                        &ticket,
                        &signed,
                        &service.name,
                        &service.model,
                        Verdict::Paid,
                    )
                    .await?;
                drop(ticket);
                self.keep_evidence(id, evidence).await;
                self.acknowledge_as_policy(service, &signed).await;
                Ok(PaidReceipt {
                    id,
                    provider: service.provider,
                    fee,
                    owed,
                    signed,
                })
            }
            Err(fault) => {
                tracing::warn!(provider = %service.provider, fault = %fault, "receipt refused, not paid");
                let (id, _) = book
                    .record(
                        &ticket,
                        &signed,
                        &service.name,
                        &service.model,
                        Verdict::Rejected(&fault.to_string()),
                    )
                    .await?;
                self.keep_evidence(id, evidence).await;
                Err(ClientError::BadReceipt {
                    provider: service.provider,
                    fault,
                })
            }
        }
    }

    /// Keeps an answer's evidence next to its receipt row; the receipt
    /// stands without it, so a failure is only logged.
    async fn keep_evidence(&self, id: i64, evidence: Option<Evidence>) {
        let Some(evidence) = evidence else { return };
        if let Err(e) = self.inner.book.keep_evidence(id, &evidence).await {
            tracing::warn!(receipt = id, error = %e, "keeping the answer's evidence failed");
        }
    }

    /// `service.url` joined with `path`, parsed once per pair.
    fn url(&self, service: &Service, path: &str) -> Result<reqwest::Url, ClientError> {
        if let Some(url) = self
            .urls()
            .get(&service.url)
            .and_then(|paths| paths.get(path))
        {
            return Ok(url.clone());
        }
        let url = reqwest::Url::parse(&endpoint(&service.url, path))
            .map_err(|e| unreachable_msg(service, &format!("the listed URL is not a URL: {e}")))?;
        self.urls()
            .entry(service.url.clone())
            .or_default()
            .insert(path.to_owned(), url.clone());
        Ok(url)
    }

    fn urls(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<String, reqwest::Url>>> {
        self.inner.urls.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn fetch_receipt(
        &self,
        service: &Service,
        id: &str,
    ) -> Result<SignedReceipt, ClientError> {
        let url = endpoint(&service.url, &routes::receipt(id));
        // The broker stores the receipt as the stream ends; give it a moment.
        for attempt in 0..40 {
            let response = self
                .inner
                .http
                .get(&url)
                .send()
                .await
                .map_err(|e| unreachable(service, e))?;
            if response.status().as_u16() == 404 && attempt < 39 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            if !response.status().is_success() {
                return Err(missing(
                    service,
                    format!("GET /v1/receipts/{id} answered HTTP {}", response.status()),
                ));
            }
            let bytes = response
                .bytes()
                .await
                .map_err(|e| unreachable(service, e))?;
            return serde_json::from_slice(&bytes).map_err(|e| {
                missing(
                    service,
                    format!("GET /v1/receipts/{id} is not a signed receipt: {e}"),
                )
            });
        }
        Err(missing(service, format!("receipt {id} never appeared")))
    }
}

/// A request as sent: the answer, what its evidence needs, and the quote
/// it went out under with the output it asked for.
struct Posted {
    response: reqwest::Response,
    nonce: Nonce,
    digest: B256,
    body: Bytes,
    quoted: Option<(zg_core::Quote, u64)>,
}

/// An answer whose receipt came, with what checking it needs.
struct Answered {
    request_id: Option<String>,
    quoted: Option<(zg_core::Quote, u64)>,
    nonce: Nonce,
    request_digest: B256,
    request: Bytes,
    response_digest: B256,
    /// The whole body (empty for a stream of a service without proofs,
    /// which keeps no evidence).
    response: Bytes,
}

impl Answered {
    /// The answer's evidence; `None` for bodies that are not text (an
    /// OpenAI-compatible answer always is), which no verifier could read.
    fn evidence(self, signed: &SignedReceipt, proof: Bytes) -> Option<Evidence> {
        Some(Evidence {
            receipt: signed.clone(),
            nonce: B128::from(self.nonce.0),
            request: String::from_utf8(self.request.to_vec()).ok()?,
            response: String::from_utf8(self.response.to_vec()).ok()?,
            proof: proof.into(),
        })
    }
}

/// The proof method `service` registered, if it registered one.
fn proof_method(service: &Service) -> Option<&'static str> {
    Verifiability::parse(&service.verifiability)
        .ok()
        .and_then(Verifiability::proof_method)
}

fn request_id(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get(headers::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `service.url` joined with an API path, whether the URL ends in `/v1` or not.
pub fn endpoint(base: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    let base = base.strip_suffix("/v1").unwrap_or(base);
    format!("{base}{path}")
}

fn content_type(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn unreachable(service: &Service, e: reqwest::Error) -> ClientError {
    unreachable_msg(service, &e.to_string())
}

fn unreachable_msg(service: &Service, reason: &str) -> ClientError {
    ClientError::Unreachable {
        provider: service.provider,
        url: service.url.clone(),
        reason: reason.to_owned(),
    }
}

fn missing(service: &Service, reason: String) -> ClientError {
    ClientError::MissingReceipt {
        provider: service.provider,
        reason,
    }
}

/// A non-2xx answer in OpenAI's error shape, with the protocol's code.
pub(crate) async fn refused(provider: Address, response: reqwest::Response) -> ClientError {
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap_or_default();
    let error = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("error").cloned());
    let code = error
        .as_ref()
        .and_then(|e| e.get("code"))
        .and_then(|c| c.as_str())
        .and_then(|c| c.parse::<ErrorCode>().ok());
    let message = error
        .as_ref()
        .and_then(|e| e.get("message"))
        .and_then(|m| m.as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(300).collect());
    ClientError::Refused {
        provider,
        status,
        code,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::{endpoint, routes};

    #[test]
    fn joins_service_urls_with_or_without_v1() {
        for base in [
            "http://h:1",
            "http://h:1/",
            "http://h:1/v1",
            "http://h:1/v1/",
        ] {
            assert_eq!(
                endpoint(base, routes::CHAT_COMPLETIONS),
                "http://h:1/v1/chat/completions"
            );
        }
    }
}
