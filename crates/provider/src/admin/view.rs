//! What the provider page shows, read fresh for each request: the books
//! (the very figures `provider status` prints), the services with the
//! prices in force and their traffic, settlements from the store, refunds
//! and disputes from the chain, fine-tuning jobs, and whether each upstream answers. A part
//! that could not be read is an `Err` the page shows as a banner.

use std::{collections::BTreeMap, sync::Mutex, time::Duration};

use axum::http::Uri;
use zg_chain::{ChainError, DisputeInfo, DisputeState, EscrowAccount, PendingRefund};
use zg_core::{Address, B256, ErrorCode, Prices, U256, fine_tuning::JobView, wire::routes};

use super::PageState;
use crate::{
    admission::Tab,
    broker::{Broker, ServiceRuntime},
    metrics::{self, Count},
    status::{Books, Totals, within},
    store::{SettlementRecord, StoreError},
};

/// Settlements listed, newest first.
const SETTLEMENTS_SHOWN: u32 = 50;
/// Escrow accounts read per call, and at most in all.
const ACCOUNTS_PAGE: u64 = 200;
const ACCOUNTS_MAX: u64 = 10_000;
/// The newest disputes looked at (of every provider).
const DISPUTES_SCANNED: u64 = 200;
/// How long an upstream has to answer before the page says it is down.
const UPSTREAM_PATIENCE: Duration = Duration::from_secs(2);

/// Everything one rendering of the page needs.
pub(super) struct View {
    pub(super) provider: Address,
    pub(super) chain_id: u64,
    pub(super) contract: Address,
    pub(super) now: i64,
    pub(super) books: Books,
    pub(super) services: Vec<ServiceRow>,
    pub(super) settlements: Result<Vec<SettlementRecord>, StoreError>,
    pub(super) refunds: Result<Vec<Refund>, ChainError>,
    pub(super) disputes: Result<Vec<DisputeInfo>, ChainError>,
    /// Services whose upstream did not answer, with why.
    pub(super) upstreams_down: Vec<(String, String)>,
    pub(super) errors: Vec<(ErrorCode, u64)>,
    /// Paid answers per minute over the last hour.
    pub(super) history: Vec<(i64, Count)>,
    /// The fine-tuning jobs, newest first (None: no fine-tuning service).
    pub(super) jobs: Option<Vec<JobView>>,
}

/// A configured service as the page lists it.
pub(super) struct ServiceRow {
    pub(super) id: B256,
    pub(super) name: String,
    pub(super) kind: String,
    pub(super) model: String,
    pub(super) ceilings: Prices,
    /// The base prices of the quote in force now, and how many tiers it has.
    pub(super) now: Prices,
    pub(super) tiers: usize,
    pub(super) per_minute: Count,
}

/// A user's pending refund, with what of theirs is not yet settled.
pub(super) struct Refund {
    pub(super) user: Address,
    pub(super) refund: PendingRefund,
    pub(super) escrow: U256,
    pub(super) unsettled: Option<U256>,
}

impl View {
    pub(super) async fn read(state: &PageState) -> Self {
        let broker = &state.broker;
        let now = crate::store::now_unix();
        let (books, settlements, refunds, disputes, upstreams_down) = tokio::join!(
            Books::gather(broker),
            broker.store.settlements(SETTLEMENTS_SHOWN),
            refunds(broker),
            state.disputes.against(broker),
            upstreams_down(broker),
        );
        let refunds = refunds.map(|accounts| {
            let tabs = books.tabs.as_deref().unwrap_or_default();
            let mut refunds: Vec<Refund> = accounts
                .into_iter()
                .filter_map(|a| {
                    let refund = a.refund?;
                    let unsettled = tabs
                        .iter()
                        .find(|t| t.user == a.user)
                        .map(Tab::unsettled)
                        .or(books.tabs.is_ok().then_some(U256::ZERO));
                    Some(Refund {
                        user: a.user,
                        refund,
                        escrow: a.escrow,
                        unsettled,
                    })
                })
                .collect();
            refunds.sort_by_key(|r| (r.refund.unlock_at, r.user));
            refunds
        });
        let services = broker
            .services
            .iter()
            .map(|s| service_row(broker, s, now))
            .collect();
        Self {
            provider: broker.provider,
            chain_id: broker.domain.chain_id,
            contract: broker.domain.contract,
            now,
            books,
            services,
            settlements,
            refunds,
            disputes,
            upstreams_down,
            errors: metrics::global().errors(),
            history: broker.traffic.history(now),
            jobs: broker.tuner.as_ref().map(|t| t.views()),
        }
    }

    /// The sums over the tabs, when the store answered.
    pub(super) fn totals(&self) -> Option<Totals> {
        self.books.tabs.as_deref().ok().map(Totals::of)
    }
}

fn service_row(broker: &Broker, s: &ServiceRuntime, now: i64) -> ServiceRow {
    let quote = broker.quote(s);
    ServiceRow {
        id: s.id,
        name: s.config.name.clone(),
        kind: s.config.kind.to_string(),
        model: s.config.model.clone(),
        ceilings: s.prices,
        now: quote.tiers.first().map_or(s.prices, |t| t.prices),
        tiers: quote.tiers.len(),
        per_minute: broker.traffic.per_minute(&s.config.name, now),
    }
}

/// Every escrow account at this provider (up to [`ACCOUNTS_MAX`]).
async fn refunds(broker: &Broker) -> Result<Vec<EscrowAccount>, ChainError> {
    let limit = Duration::from_secs(broker.config.settlement.rpc_timeout_secs);
    let mut accounts = Vec::new();
    let mut offset = 0;
    while offset < ACCOUNTS_MAX {
        let page = within(
            limit,
            "listing the escrow accounts",
            broker
                .chain
                .chain()
                .accounts_of_provider(broker.provider, offset, ACCOUNTS_PAGE),
        )
        .await?;
        let n = page.items.len() as u64;
        accounts.extend(page.items);
        offset += n;
        if n == 0 || offset >= page.total {
            break;
        }
    }
    Ok(accounts)
}

/// The services whose upstream gives no HTTP answer to `GET /v1/models`
/// (any status counts as an answer: the server is up).
async fn upstreams_down(broker: &Broker) -> Vec<(String, String)> {
    let checks = broker.services.iter().map(|s| async move {
        let url = crate::upstream::url(&s.base, routes::MODELS);
        let uri: Uri = match url.parse() {
            Ok(uri) => uri,
            Err(e) => return Some((s.config.name.clone(), format!("{url}: {e}"))),
        };
        match tokio::time::timeout(UPSTREAM_PATIENCE, broker.http.get(&uri, &s.headers)).await {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some((s.config.name.clone(), format!("{url}: {e}"))),
            Err(_) => Some((
                s.config.name.clone(),
                format!("{url} did not answer within {UPSTREAM_PATIENCE:?}"),
            )),
        }
    });
    futures::future::join_all(checks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Disputes read so far that can no longer change: closed ones against
/// this provider, and (as `None`) every dispute against another.
#[derive(Default)]
pub(super) struct DisputeCache {
    settled: Mutex<BTreeMap<u64, Option<DisputeInfo>>>,
}

impl DisputeCache {
    fn known(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Option<DisputeInfo>>> {
        self.settled.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The disputes against this provider among the newest
    /// [`DISPUTES_SCANNED`], newest first.
    async fn against(&self, broker: &Broker) -> Result<Vec<DisputeInfo>, ChainError> {
        let chain = broker.chain.chain();
        let limit = Duration::from_secs(broker.config.settlement.rpc_timeout_secs);
        let count = within(limit, "counting disputes", chain.dispute_count()).await?;
        let first = count.saturating_sub(DISPUTES_SCANNED) + 1;
        let (mut found, missing): (Vec<DisputeInfo>, Vec<u64>) = {
            let known = self.known();
            let mut found = Vec::new();
            let mut missing = Vec::new();
            for id in (first..=count).rev() {
                match known.get(&id) {
                    Some(Some(d)) => found.push(d.clone()),
                    Some(None) => {}
                    None => missing.push(id),
                }
            }
            (found, missing)
        };
        let reads = missing
            .iter()
            .map(|id| within(limit, "reading a dispute", chain.dispute(*id)));
        let read = futures::future::join_all(reads)
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        let mut known = self.known();
        for d in read {
            let ours = d.provider == broker.provider;
            if !ours {
                known.insert(d.id, None);
                continue;
            }
            if d.state != DisputeState::Open {
                known.insert(d.id, Some(d.clone()));
            }
            found.push(d);
        }
        found.sort_by_key(|d| std::cmp::Reverse(d.id));
        Ok(found)
    }
}
