//! Quotes taken before a request is signed: a broker's signed prices for
//! one service, checked against the registry (signer, ceilings) and kept
//! until shortly before they expire. A request is sent under one
//! (`X-ZG-Quote`) and its receipt may not charge more than the quote's
//! tier for that answer. A broker that serves no quotes (an older one)
//! is asked again after a while; its receipts are held to the ceilings.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use zg_core::{
    Address, B256, Domain, ErrorCode, Quote, Service, SignedQuote, now_unix, wire::routes,
};

use super::{endpoint, refused, unreachable, unreachable_msg};
use crate::ClientError;

/// A quote is taken again when it has less than this left (seconds): a
/// request sent under it must reach the broker while it is valid.
const REFRESH_MARGIN: u64 = 5;
/// How long a broker that serves no quotes is left unasked.
const NO_QUOTES_FOR: Duration = Duration::from_secs(60);

/// What the client holds for one (provider, service).
#[derive(Clone)]
enum Held {
    /// The quote, and its compact JSON for the header.
    Quote(Box<Quote>, String),
    /// The broker serves no quotes; ask again after this.
    None(Instant),
}

/// The quote a request goes out under.
#[derive(Debug, Clone)]
pub struct Taken {
    pub quote: Quote,
    /// `X-ZG-Quote`'s value.
    pub header: String,
}

#[derive(Default)]
pub(super) struct Quotes(Mutex<HashMap<(Address, B256), Held>>);

impl Quotes {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<(Address, B256), Held>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets the quote of `service` (the broker refused it).
    pub(super) fn forget(&self, service: &Service) {
        self.held().remove(&(service.provider, service.id()));
    }

    /// A valid quote of `service`: the one held, or a new one.
    pub(super) async fn take(
        &self,
        http: &reqwest::Client,
        domain: &Domain,
        service: &Service,
    ) -> Result<Option<Taken>, ClientError> {
        let key = (service.provider, service.id());
        let now = now_unix();
        match self.held().get(&key) {
            Some(Held::Quote(q, header)) if q.valid_until >= now + REFRESH_MARGIN => {
                return Ok(Some(Taken {
                    quote: (**q).clone(),
                    header: header.clone(),
                }));
            }
            Some(Held::None(until)) if Instant::now() < *until => return Ok(None),
            _ => {}
        }
        let fetched = fetch(http, domain, service).await?;
        let held = match &fetched {
            Some(t) => Held::Quote(Box::new(t.quote.clone()), t.header.clone()),
            None => Held::None(Instant::now() + NO_QUOTES_FOR),
        };
        self.held().insert(key, held);
        Ok(fetched)
    }
}

/// `GET /v1/quote?model=NAME` of `service`'s broker, checked; `None` when
/// the broker has no such route.
pub async fn fetch(
    http: &reqwest::Client,
    domain: &Domain,
    service: &Service,
) -> Result<Option<Taken>, ClientError> {
    let path = routes::QUOTE;
    let response = http
        .get(endpoint(&service.url, path))
        .query(&[("model", &service.name)])
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| unreachable(service, e))?;
    if !response.status().is_success() {
        return match refused(service.provider, response).await {
            // A broker without quotes: no such route (one that does not
            // know the service answers unknown_model: a broken listing).
            ClientError::Refused {
                status: 404,
                code: None | Some(ErrorCode::NotFound),
                ..
            } => Ok(None),
            other => Err(unreachable_msg(service, &format!("GET {path}: {other}"))),
        };
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|e| unreachable(service, e))?;
    let bad = |why: String| unreachable_msg(service, &format!("GET {path}: {why}"));
    let signed: SignedQuote =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a signed quote: {e}")))?;
    signed
        .check(
            domain,
            service.provider,
            service.id(),
            service.signer,
            &service.prices,
        )
        .map_err(|e| bad(e.to_string()))?;
    signed
        .quote
        .valid_at(now_unix())
        .map_err(|e| bad(e.to_string()))?;
    let header = serde_json::to_string(&signed).map_err(|e| bad(e.to_string()))?;
    Ok(Some(Taken {
        quote: signed.quote,
        header,
    }))
}

/// The output a request body asks for per choice (`max_completion_tokens`
/// or `max_tokens`), if it names it.
pub(super) fn asked_output(body: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Asked {
        max_completion_tokens: Option<u64>,
        max_tokens: Option<u64>,
    }
    let asked: Asked = serde_json::from_slice(body).ok()?;
    asked.max_completion_tokens.or(asked.max_tokens)
}
