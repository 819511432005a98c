//! The broker: its parts (config, services, store, chain view, settler),
//! opened without side effects, and the three steps of a paid request that
//! touch the books: admit (verify the voucher, store it with the worst case
//! reserved), charge (store the fee, sign the receipt) or release (free).
//! `forward` decides which of the last two a request gets.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri};
use bytes::Bytes;
use tracing::Instrument;
use zg_chain::ChainClient;
use zg_core::{
    Address, B256, Domain, ErrorCode, PaymentHeaders, Prices, Quote, Receipt, ServiceKind,
    SignedQuote, SigningKey, U256, Usage, Verifiability, Voucher, headers::SignedReceipt,
    proof_digest, request_digest, service_id, wire::routes,
};

use crate::{
    admission::{Admission, Refusal, Tab},
    config::{Config, ServiceConfig},
    error::{ApiError, StartError},
    escrow::ChainView,
    settle::Settler,
    store::{self, Charge, Issued, Store, StoreError, new_id},
    upstream::Upstream,
};

/// How long after its `validUntil` a quote is still honoured: the request
/// may have been sent under it a moment before.
const QUOTE_GRACE: u64 = 10;

/// How often an open provider page refreshes when nothing here changed
/// (the chain changes on its own: refunds, disputes, earnings).
const LIVE_TICK: std::time::Duration = std::time::Duration::from_secs(15);

/// A configured service, ready to proxy.
#[derive(Debug, Clone)]
pub(crate) struct ServiceRuntime {
    pub(crate) config: ServiceConfig,
    pub(crate) id: B256,
    /// The on-chain ceilings.
    pub(crate) prices: Prices,
    /// How prices move under them, and the load they move with.
    pub(crate) pricing: Arc<crate::pricing::Pricing>,
    /// The paid routes the service answers, each with its upstream URL
    /// parsed once: chat and legacy completions for a chat service, the
    /// embeddings route for an embeddings one.
    urls: Vec<(&'static str, Uri)>,
    /// The upstream's base URL, without a trailing `/` (ends in `/v1`).
    pub(crate) base: String,
    pub(crate) headers: HeaderMap,
    /// The registered method, checked at start against the upstream.
    pub(crate) verifiability: Verifiability,
    /// What `/v1/models` lists: the config's list, else (once serving)
    /// what the upstream's model card lists.
    pub(crate) capabilities: Vec<&'static str>,
}

/// The service a paid request goes to, and its upstream URL for the route.
pub(crate) struct Target {
    pub(crate) service: Arc<ServiceRuntime>,
    pub(crate) url: Uri,
}

impl ServiceRuntime {
    /// This service, listing `capabilities`.
    pub(crate) fn with_capabilities(&self, capabilities: Vec<&'static str>) -> Self {
        Self {
            capabilities,
            ..self.clone()
        }
    }

    fn url(&self, route: &str) -> Option<&Uri> {
        self.urls.iter().find(|(r, _)| *r == route).map(|(_, u)| u)
    }
}

/// A provider broker's state, shared by every request.
pub struct Broker {
    pub(crate) config: Config,
    pub(crate) services: Vec<Arc<ServiceRuntime>>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) chain: Arc<ChainView>,
    pub(crate) domain: Domain,
    pub(crate) provider: Address,
    pub(crate) signer: SigningKey,
    pub(crate) http: Upstream,
    settler: Arc<Settler>,
    /// Paid answers per minute and service, for the provider page.
    pub(crate) traffic: crate::metrics::Traffic,
    /// Tells open provider pages that the books changed.
    pub(crate) live: Arc<zg_web::Live>,
    /// Quotes whose signature was checked, by signing hash, with when they
    /// expire: a client sends one quote with many requests, and checking it
    /// again would double the signature work of each.
    checked_quotes: std::sync::Mutex<std::collections::HashMap<B256, u64>>,
    /// The fine-tuning service, when `[fine_tuning]` configures one.
    pub(crate) tuner: Option<Arc<crate::fine_tuning::Tuner>>,
}

impl Broker {
    /// Connects to the chain and opens (creating or migrating) the store.
    /// Changes nothing else: reading the books (`provider status`) or
    /// settling once is safe next to a live broker. [`Broker::serve`] is
    /// what releases a crashed run's requests and syncs the registry.
    pub async fn open(config: Config) -> Result<Self, StartError> {
        // The RPC may sit behind the same private CA as the upstreams.
        let http = zg_chain::tls::rpc_client_trusting(&config.tls.extra_ca)
            .map_err(|e| StartError::Config(format!("tls.extra_ca: {e}")))?;
        let chain = ChainClient::connect_via(
            http,
            &config.chain.rpc_url,
            config.chain.contract,
            &config.keys.provider.to_bytes(),
        )
        .await?;
        let store = store::open(&config.database.url, chain.wallet()).await?;
        let chain = Arc::new(ChainView::new(chain, config.settlement.refund_margin_secs));
        let services = config
            .services
            .iter()
            .map(|s| runtime(s.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let http = Upstream::new(config.tls.upstream_client()?);
        let tuner = match &config.fine_tuning {
            Some(ft) => Some(
                crate::fine_tuning::Tuner::open(ft.clone(), chain.clone(), store.clone())
                    .await
                    .map_err(StartError::Config)?,
            ),
            None => None,
        };
        let live = Arc::new(zg_web::Live::new(LIVE_TICK));
        let settler = Arc::new(Settler::new(
            store.clone(),
            chain.clone(),
            config.settlement.clone(),
            live.clone(),
        ));
        Ok(Self {
            domain: chain.chain().domain(),
            provider: chain.provider(),
            signer: config.signer().clone(),
            services,
            store,
            chain,
            config,
            http,
            settler,
            traffic: Default::default(),
            live,
            checked_quotes: Default::default(),
            tuner,
        })
    }

    /// The provider's address.
    pub fn provider(&self) -> Address {
        self.provider
    }

    /// The settlement of this broker's vouchers.
    pub fn settler(&self) -> &Arc<Settler> {
        &self.settler
    }

    /// What the broker knows of `user`, if anything.
    pub async fn tab(&self, user: Address) -> Result<Option<Tab>, StoreError> {
        self.store.tab(user).await
    }

    /// The service a request's `model` names (a service name, else a model
    /// id) for `route`, one of the paid routes.
    pub(crate) fn service(&self, model: &str, route: &str) -> Result<Target, ApiError> {
        let by_name = self.services.iter().find(|s| s.config.name == model);
        let found = by_name.or_else(|| {
            self.services
                .iter()
                .find(|s| s.config.model == model && s.url(route).is_some())
        });
        match found.map(|s| (s, s.url(route))) {
            Some((s, Some(url))) => Ok(Target {
                service: s.clone(),
                url: url.clone(),
            }),
            Some((s, None)) => {
                let answers: Vec<&str> = s.urls.iter().map(|(r, _)| *r).collect();
                Err(ApiError::new(
                    ErrorCode::UnknownModel,
                    format!(
                        "service {:?} is a {} service: it answers {answers:?}, not {route}",
                        s.config.name, s.config.kind
                    ),
                )
                .with_param("model"))
            }
            None => Err(self.unknown_model(model)),
        }
    }

    /// The service a quote's `model` names: a service name, else a model id.
    pub(crate) fn service_named(&self, model: &str) -> Result<&Arc<ServiceRuntime>, ApiError> {
        let by_name = self.services.iter().find(|s| s.config.name == model);
        by_name
            .or_else(|| self.services.iter().find(|s| s.config.model == model))
            .ok_or_else(|| self.unknown_model(model))
    }

    fn unknown_model(&self, model: &str) -> ApiError {
        let names: Vec<&str> = self
            .services
            .iter()
            .map(|s| s.config.name.as_str())
            .collect();
        ApiError::new(
            ErrorCode::UnknownModel,
            format!(
                "no service {model:?} here; this provider serves {names:?} (GET {})",
                routes::MODELS
            ),
        )
        .with_param("model")
    }

    /// Checks the payment headers and the voucher's signature, then has the
    /// store admit the request against the user's escrow.
    pub(crate) async fn admit(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        service: &ServiceRuntime,
        worst: U256,
    ) -> Result<Admission, ApiError> {
        let payment =
            PaymentHeaders::decode(|name| headers.get(name).and_then(|v| v.to_str().ok()))
                .map_err(|e| ApiError::new(ErrorCode::VoucherInvalid, e.to_string()))?;
        let voucher = Voucher {
            user: payment.user,
            provider: self.provider,
            cumulative: payment.cumulative,
            request_digest: request_digest(&payment.nonce, body),
        };
        self.check_signature(&voucher, &payment.signature).await?;
        let mut admission = Admission {
            id: new_id(),
            replica: self.config.replica.clone(),
            service: service.config.name.clone(),
            voucher,
            signature: payment.signature,
            worst,
            credit_limit: service.config.credit_limit,
            cap: self.cap(voucher.user, false).await?,
        };
        let span = tracing::info_span!("admit", user = %voucher.user, request = %admission.id);
        let mut outcome = self
            .store
            .admit(&admission)
            .instrument(span.clone())
            .await?;
        if let Err(Refusal::Escrow { .. }) = outcome {
            // The cache may predate a top-up: read the chain before refusing.
            admission.cap = self.cap(voucher.user, true).await?;
            outcome = self.store.admit(&admission).instrument(span).await?;
        }
        outcome.map_err(|r| r.into_api(voucher.user, self.provider))?;
        Ok(admission)
    }

    /// The voucher must recover to its user or to the user's delegated signer.
    pub(crate) async fn check_signature(
        &self,
        voucher: &Voucher,
        signature: &zg_core::Signature,
    ) -> Result<(), ApiError> {
        let signer = voucher.signer(signature, &self.domain).map_err(|e| {
            ApiError::new(ErrorCode::VoucherInvalid, format!("X-ZG-Signature: {e}"))
        })?;
        if self.speaks_for(voucher.user, signer).await? {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorCode::VoucherInvalid,
            format!(
                "the voucher is signed by {signer}, which is neither {} nor its delegated signer: sign Voucher(user, provider {}, cumulative, requestDigest = keccak256(nonce || body)) in domain zg-serving/1 chain {} contract {}",
                voucher.user, self.provider, self.domain.chain_id, self.domain.contract
            ),
        ))
    }

    /// Whether `signer` is `user` or the voucher signer `user` delegated on
    /// chain (as of the newest block).
    pub(crate) async fn speaks_for(
        &self,
        user: Address,
        signer: Address,
    ) -> Result<bool, ApiError> {
        if signer == user {
            return Ok(true);
        }
        self.chain.is_delegate(user, signer).await.map_err(|e| {
            tracing::warn!(error = %e, "reading the voucher signer failed");
            ApiError::internal("could not read the user's delegated signer from the chain")
        })
    }

    async fn cap(&self, user: Address, refresh: bool) -> Result<U256, ApiError> {
        self.chain.cap(user, refresh).await.map_err(|e| {
            tracing::warn!(error = %e, %user, "reading the escrow failed");
            ApiError::internal("could not read the user's escrow from the chain")
        })
    }

    /// The prices of `service` in force now, as a quote.
    pub(crate) fn quote(&self, service: &ServiceRuntime) -> Quote {
        service.pricing.quote(
            self.provider,
            service.id,
            &service.prices,
            service.config.max_output_tokens,
            zg_core::now_unix(),
        )
    }

    /// The quote a request was sent under (`X-ZG-Quote`), if it names one:
    /// this broker's, for `service`, still valid (with [`QUOTE_GRACE`] for
    /// the trip); else `quote_invalid`.
    pub(crate) fn accepted_quote(
        &self,
        headers: &HeaderMap,
        service: &ServiceRuntime,
    ) -> Result<Option<Quote>, ApiError> {
        let Some(value) = headers.get(zg_core::headers::QUOTE) else {
            return Ok(None);
        };
        let invalid = |why: String| {
            ApiError::new(
                ErrorCode::QuoteInvalid,
                format!(
                    "X-ZG-Quote: {why}; take a new quote from GET {}?model={} and send the request again (it cost nothing)",
                    routes::QUOTE,
                    service.config.name
                ),
            )
        };
        let signed: SignedQuote = value
            .to_str()
            .ok()
            .and_then(|text| serde_json::from_str(text).ok())
            .ok_or_else(|| {
                invalid(
                    "expected the signed quote as GET /v1/quote serves it, in compact JSON".into(),
                )
            })?;
        let now = zg_core::now_unix();
        signed
            .quote
            .valid_at(now.saturating_sub(QUOTE_GRACE))
            .map_err(|e| invalid(e.to_string()))?;
        let hash = signed.quote.signing_hash(&self.domain);
        let known = self.quotes_checked().contains_key(&hash);
        if !known || signed.quote.service != service.id {
            signed
                .check(
                    &self.domain,
                    self.provider,
                    service.id,
                    self.signer.address(),
                    &service.prices,
                )
                .map_err(|e| invalid(e.to_string()))?;
            let mut checked = self.quotes_checked();
            if checked.len() >= 4096 {
                checked.retain(|_, until| *until + QUOTE_GRACE >= now);
            }
            checked.insert(hash, signed.quote.valid_until);
        }
        Ok(Some(signed.quote))
    }

    fn quotes_checked(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<B256, u64>> {
        self.checked_quotes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Stores the fee of `usage` at `prices` and the answer's proof, if
    /// any, and returns the signed receipt, which binds the prices and the
    /// proof's digest.
    pub(crate) async fn charge(
        &self,
        admission: &Admission,
        service: &ServiceRuntime,
        (usage, prices): (Usage, Prices),
        response_digest: B256,
        proof: Option<Bytes>,
    ) -> Result<Issued, ApiError> {
        let fee = prices.fee(usage).map_err(ApiError::internal)?;
        let user = admission.voucher.user;
        let template = Receipt {
            user,
            provider: self.provider,
            service: service.id,
            model_digest: service.config.model_digest,
            request_digest: admission.voucher.request_digest,
            response_digest,
            input_tokens: U256::from(usage.input_tokens),
            output_tokens: U256::from(usage.output_tokens),
            cached_tokens: U256::from(usage.cached_input_tokens),
            input_price: prices.input,
            output_price: prices.output,
            cached_price: prices.cached,
            fee,
            owed: U256::ZERO,
            proof_digest: proof.as_deref().map_or(B256::ZERO, proof_digest),
            issued_at: zg_core::now_unix(),
        };
        let (domain, signer) = (self.domain, self.signer.clone());
        let sign = move |owed: U256| {
            let receipt = Receipt { owed, ..template };
            let hash = receipt.signing_hash(&domain);
            let signature = signer.sign_hash(&hash);
            let json = SignedReceipt::new(receipt, &signature).to_header();
            Issued { hash, json, proof }
        };
        let receipt = self
            .store
            .charge(Charge {
                id: admission.id.clone(),
                user,
                worst: admission.worst,
                fee,
                sign: Box::new(sign),
            })
            .await?;
        crate::metrics::global().charged(usage.input_tokens, usage.output_tokens, fee);
        let tokens = usage.input_tokens.saturating_add(usage.output_tokens);
        self.traffic
            .record(&service.config.name, tokens, crate::store::now_unix());
        self.live.bump();
        tracing::info!(
            input = usage.input_tokens, output = usage.output_tokens, %fee, "charged"
        );
        Ok(receipt)
    }

    /// The request got no answer: it costs nothing.
    pub(crate) async fn release(&self, admission: &Admission, why: &str) {
        tracing::warn!(why, "no answer; the request is free");
        let released = self
            .store
            .release(&admission.id, admission.voucher.user, admission.worst)
            .await;
        if let Err(e) = released {
            tracing::error!(error = %e, "releasing the reservation failed");
        }
    }
}

fn runtime(config: ServiceConfig) -> Result<Arc<ServiceRuntime>, StartError> {
    let mut headers = HeaderMap::new();
    for (name, value) in &config.upstream_headers {
        let bad = || {
            StartError::Config(format!(
                "service {:?}: upstream header {name:?} is not a valid HTTP header name and value",
                config.name
            ))
        };
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
        let value = HeaderValue::from_str(value).map_err(|_| bad())?;
        headers.insert(name, value);
    }
    let verifiability = config
        .verifiability()
        .map_err(|why| StartError::Verifiability {
            service: config.name.clone(),
            why,
        })?;
    let base = config.upstream.trim_end_matches('/').to_owned();
    let paid: &[&'static str] = match config.kind {
        ServiceKind::Chat => &[routes::CHAT_COMPLETIONS, routes::COMPLETIONS],
        _ => &[routes::EMBEDDINGS],
    };
    let mut urls = Vec::with_capacity(paid.len());
    for route in paid {
        let url = crate::upstream::url(&base, route);
        let uri = match url.parse::<Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() =>
            {
                uri
            }
            Ok(_) => {
                return Err(StartError::Config(format!(
                    "service {:?}: upstream {url:?} must be an http:// or https:// URL with a host",
                    config.name
                )));
            }
            Err(e) => {
                return Err(StartError::Config(format!(
                    "service {:?}: upstream {url:?} is not a URL: {e}",
                    config.name
                )));
            }
        };
        urls.push((*route, uri));
    }
    let capabilities = config
        .declared_capabilities()
        .map_err(StartError::Config)?
        .unwrap_or_default();
    Ok(Arc::new(ServiceRuntime {
        id: service_id(&config.name),
        prices: config.ceilings(),
        pricing: Arc::new(crate::pricing::Pricing::new(&config.pricing)),
        urls,
        base,
        headers,
        verifiability,
        capabilities,
        config,
    }))
}
