//! zg-gateway: a local OpenAI-compatible server in front of the whole
//! marketplace, on top of the zg-client SDK. Any OpenAI SDK points its
//! base_url here. `http` is the edge (routes, headers, error bodies);
//! `dispatch` serves one paid request: the user's limits (`limits`),
//! providers ranked by price, latency and failures (`ranking`), payment
//! and receipt checks (through [`zg_client::Payer`]), failover before the
//! first byte, escrow top-up within a budget (`topup`), and local API keys
//! with spend limits (`keys`). A request steers its routing as OpenRouter's
//! do (`routing`: the `provider` object; `models` fallbacks), goes only to
//! services that list the capabilities it needs (`capabilities`), and its
//! answer's `usage` says what it cost (`cost`). Answers of proof services
//! are audited in the background (`audit`), once [`Gateway::start_audits`]
//! gives the gateway a [`Checker`]. The user's own web page (money,
//! providers, activity, keys, a playground) is served next to `/v1`,
//! behind an admin token (`web`). OpenAI's files and fine-tuning APIs
//! order LoRA training from fine-tuning services and bring the adapter home
//! (`fine_tuning`), under [`GatewayConfig::data_dir`].

// Errors carry the amounts and addresses a user needs to act on; they are
// off the hot path, so they are not boxed.
#![allow(clippy::result_large_err)]

mod audit;
mod capabilities;
mod cost;
mod dispatch;
mod fine_tuning;
mod http;
mod keys;
mod limits;
mod ranking;
mod responses;
mod routing;
mod topup;
mod web;

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};
use zg_chain::ChainClient;
use zg_client::{ClientError, Payer, ServiceFilter, discovery};
use zg_core::Service;

pub use audit::{AuditCounts, AuditPolicy, AuditResult, Checker};
pub use keys::{KeyInfo, Keys};
pub use ranking::{Ranking, RankingPolicy, Standing};
pub use routing::Sort;
pub use topup::TopUpPolicy;

/// How the gateway behaves; the CLI fills it from flags and a TOML file.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The user's standing limits (max prices, only/ignore providers,
    /// verifiability); a request can narrow them, never widen them.
    pub limits: ServiceFilter,
    pub ranking: RankingPolicy,
    /// Escrow top-up on `insufficient_escrow`; None: never move money.
    pub topup: Option<TopUpPolicy>,
    /// How long the registry listing is reused before it is read again.
    pub refresh: Duration,
    /// Providers tried per request before giving up.
    pub max_attempts: usize,
    /// Output tokens assumed when a request sets no `max_tokens` (for the
    /// worst case held against a key's limit, and injected when it has one).
    pub default_max_tokens: u64,
    /// The token that opens the web page; None: a random one, made at
    /// [`Gateway::new`] (see [`Gateway::admin_token`]).
    pub admin_token: Option<String>,
    /// A block explorer's base URL: the page links transactions to
    /// `{explorer}/tx/{hash}`.
    pub explorer_url: Option<String>,
    /// Where uploaded files, fine-tuning job records and adapters live
    /// (`files/`, `fine_tuning/`, `adapters/`); None: the files and
    /// fine-tuning APIs answer that the gateway keeps no files.
    pub data_dir: Option<PathBuf>,
    /// GGUF files of base models: the user's `ft:` models are answered on
    /// this machine by the base model (found by its sha256) with the
    /// job's adapter. None: `ft:` models are not served here.
    pub models_dir: Option<PathBuf>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            limits: ServiceFilter::default(),
            ranking: RankingPolicy::default(),
            topup: None,
            refresh: Duration::from_secs(30),
            max_attempts: 3,
            default_max_tokens: 1024,
            admin_token: None,
            explorer_url: None,
            data_dir: None,
            models_dir: None,
        }
    }
}

/// The runtime a standalone gateway runs on: one thread. A request costs
/// the gateway about 50 µs of signing and checking plus a commit, so one
/// core serves thousands a second; a second worker only adds wakeups that
/// hand each request between threads (about 40 µs of CPU and latency per
/// request at one connection, docs/bench-gateway.md), and on one thread
/// concurrent requests' book writes share commits without waking anyone.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// The running gateway's shared state.
pub struct Gateway {
    pub(crate) payer: Payer,
    pub(crate) chain: ChainClient,
    pub(crate) config: GatewayConfig,
    pub(crate) ranking: Ranking,
    pub(crate) keys: Keys,
    pub(crate) topup: topup::TopUp,
    pub(crate) capabilities: capabilities::Capabilities,
    pub(crate) audits: audit::Audits,
    /// The web page's token and sessions.
    pub(crate) admin: Arc<zg_web::Admin>,
    admin_token: String,
    /// Tells open pages to refresh (a receipt came).
    pub(crate) live: zg_web::Live,
    pub(crate) fine_tuning: fine_tuning::FineTuning,
    registry: RwLock<(Option<Instant>, Arc<Vec<Service>>)>,
}

impl Gateway {
    /// `chain` must be the user's wallet when top-up is on (it funds escrow)
    /// or audits open disputes (it posts the bond).
    pub async fn new(
        payer: Payer,
        chain: ChainClient,
        config: GatewayConfig,
    ) -> Result<Arc<Self>, ClientError> {
        let keys = Keys::open(payer.book().clone()).await?;
        let admin_token = config
            .admin_token
            .clone()
            .unwrap_or_else(zg_web::random_token);
        let gateway = Arc::new(Self {
            admin: zg_web::Admin::new(admin_token.clone(), "zg-serving gateway"),
            admin_token,
            live: zg_web::Live::new(web::TICK),
            ranking: Ranking::new(config.ranking),
            topup: topup::TopUp::new(config.topup),
            capabilities: capabilities::Capabilities::new(config.refresh),
            audits: audit::Audits::default(),
            fine_tuning: fine_tuning::FineTuning::open(
                config.data_dir.clone(),
                config.models_dir.clone(),
            ),
            payer,
            chain,
            config,
            keys,
            registry: RwLock::new((None, Arc::new(Vec::new()))),
        });
        gateway.services(true).await?;
        Ok(gateway)
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn ranking(&self) -> &Ranking {
        &self.ranking
    }

    /// The token that opens the web page at `/` (configured, or made at start).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The listed services, re-read from the chain when older than
    /// `refresh` (or now, with `force`, at most once a second).
    pub async fn services(&self, force: bool) -> Result<Arc<Vec<Service>>, ClientError> {
        let (loaded, current) = {
            let r = self.registry.read().unwrap_or_else(|p| p.into_inner());
            (r.0, r.1.clone())
        };
        let age = loaded.map(|t| t.elapsed());
        let stale =
            age.is_none_or(|a| a > self.config.refresh || (force && a > Duration::from_secs(1)));
        if !stale {
            return Ok(current);
        }
        match discovery::all_services(&self.chain).await {
            Ok(services) => {
                let services = Arc::new(services);
                *self.registry.write().unwrap_or_else(|p| p.into_inner()) =
                    (Some(Instant::now()), services.clone());
                Ok(services)
            }
            Err(e) if loaded.is_some() => {
                tracing::warn!(error = %e, "could not refresh the registry; using the last listing");
                Ok(current)
            }
            Err(e) => Err(e),
        }
    }

    /// Serves on `listener` until the task is dropped; fine-tuning jobs
    /// left unfinished by an earlier run carry on in the background.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        self.resume_fine_tuning().await;
        axum::serve(listener, http::router(self)).await
    }

    /// Serves in the background; returns the address.
    pub async fn spawn(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
    ) -> std::io::Result<SocketAddr> {
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            if let Err(e) = self.serve(listener).await {
                tracing::error!(error = %e, "gateway stopped");
            }
        });
        Ok(addr)
    }
}
