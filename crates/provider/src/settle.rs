//! Settlement: submits the newest voucher of every user with unsettled value,
//! in batches, when the unsettled total passes the threshold or the interval
//! has passed; from the moment it sees a user's refund request until the
//! refund is claimed, settles that user's unsettled value on every tick (so
//! settlement always lands before the unlock); retries with backoff when the
//! chain fails.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::watch;
use tracing::Instrument;
use zg_chain::{ChainError, EscrowChange, RejectReason};
use zg_core::{Address, B256, U256, now_unix};

use crate::{
    config::SettlementConfig,
    escrow::ChainView,
    store::{Store, StoreError},
};

const TICK: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error("settlement failed on chain: {0}")]
    Chain(#[from] ChainError),
    #[error("settlement could not read or record accounts: {0}")]
    Store(#[from] StoreError),
}

/// What one settlement round did.
#[derive(Debug, Default, Clone)]
pub struct Round {
    pub settled: usize,
    pub rejected: usize,
    pub paid: U256,
    pub txs: Vec<B256>,
}

/// A pending refund the loop watches: until it is claimed or cancelled, the
/// user's unsettled value is settled on every tick.
struct Watched {
    unlock_at: u64,
}

/// Collects the money: the store's newest vouchers, the chain view to
/// submit them with (and whose escrow cache it keeps current), the policy.
pub struct Settler {
    store: Arc<dyn Store>,
    chain: Arc<ChainView>,
    policy: SettlementConfig,
}

impl Settler {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        chain: Arc<ChainView>,
        policy: SettlementConfig,
    ) -> Self {
        Self {
            store,
            chain,
            policy,
        }
    }

    /// Settles now: every user with unsettled value.
    pub async fn settle_now(&self) -> Result<Round, SettleError> {
        self.settle(None, true).await
    }

    /// Settles every user with unsettled value, or only `only`, in the
    /// settlement turn (waited for when `wait`, else skipped while taken).
    async fn settle(
        &self,
        only: Option<&HashSet<Address>>,
        wait: bool,
    ) -> Result<Round, SettleError> {
        // One settler at a time over these books (the live loop, `provider
        // settle` beside it, replicas), reading them once the last is done:
        // no voucher goes out twice, nor two transactions on one nonce.
        let Some(_turn) = self.store.settle_turn(wait).await? else {
            return Ok(Round::default());
        };
        let tabs = self.store.unsettled().await?;
        let due: Vec<_> = tabs
            .iter()
            .filter(|a| only.is_none_or(|o| o.contains(&a.user)))
            .filter_map(|a| a.voucher)
            .collect();
        let mut round = Round::default();
        let provider = self.chain.provider();
        let chain = self.chain.chain();
        for batch in due.chunks(self.policy.batch_size.max(1)) {
            let span = tracing::info_span!("settle", %provider, vouchers = batch.len());
            let result = chain.settle(batch).instrument(span).await;
            let settlement = match result {
                Ok(s) => s,
                Err(e) => {
                    crate::metrics::global().settlement(false, 0, 0);
                    return Err(e.into());
                }
            };
            crate::metrics::global().settlement(
                true,
                settlement.settled.len(),
                settlement.rejected.len(),
            );
            for s in &settlement.settled {
                self.store.record_settled(s.user, s.settled).await?;
                self.chain.settled(s);
            }
            for r in &settlement.rejected {
                match r.reason {
                    RejectReason::NotNewer => {
                        // Another replica (or an earlier run) got there first.
                        let account = self.chain.refresh(r.user).await?;
                        self.store.record_settled(r.user, account.settled).await?;
                    }
                    RejectReason::EscrowEmpty => {
                        tracing::warn!(user = %r.user, "escrow empty: the voucher stays claimable after a top-up");
                    }
                    other => {
                        tracing::error!(user = %r.user, reason = ?other, "the contract rejected a stored voucher")
                    }
                }
            }
            round.settled += settlement.settled.len();
            round.rejected += settlement.rejected.len();
            round.paid = round.paid.saturating_add(settlement.paid);
            round.txs.push(settlement.outcome.tx_hash);
        }
        if !due.is_empty() {
            tracing::info!(settled = round.settled, rejected = round.rejected, paid = %round.paid, "settlement round done");
        }
        Ok(round)
    }

    /// The settlement loop; ends when `stop` turns true.
    pub(crate) async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let policy = &self.policy;
        let interval = Duration::from_secs(policy.interval_secs);
        let margin = policy.refund_margin_secs;
        let mut refunds: HashMap<Address, Watched> = HashMap::new();
        let mut next_block = match self.start_watch(&mut refunds).await {
            Ok(block) => block,
            Err(e) => {
                tracing::warn!(error = %e, "reading pending refunds failed; watching from the start of the chain");
                0
            }
        };
        let mut last_settle = Instant::now();
        let mut backoff = Duration::ZERO;
        let mut retry_at = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                return;
            }
            match self.poll_events(next_block, &mut refunds).await {
                Ok(next) => next_block = next,
                Err(e) => tracing::warn!(error = %e, "reading contract events failed"),
            }
            if Instant::now() < retry_at {
                continue;
            }
            let tabs = match self.store.unsettled().await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(error = %e, "reading accounts failed");
                    continue;
                }
            };
            let unsettled: U256 = tabs
                .iter()
                .fold(U256::ZERO, |t, a| t.saturating_add(a.unsettled()));
            let now = now_unix();
            let refund_due: HashSet<Address> = tabs
                .iter()
                .filter(|a| {
                    refunds
                        .get(&a.user)
                        .is_some_and(|w| w.unlock_at.saturating_add(margin) > now)
                })
                .map(|a| a.user)
                .collect();
            let all_due = !unsettled.is_zero()
                && (unsettled >= policy.threshold || last_settle.elapsed() >= interval);
            if !all_due && refund_due.is_empty() {
                continue;
            }
            let only = (!all_due).then_some(&refund_due);
            match self.settle(only, false).await {
                Ok(_) => {
                    backoff = Duration::ZERO;
                    last_settle = Instant::now();
                }
                Err(e) => {
                    backoff = (backoff * 2).clamp(Duration::from_secs(1), MAX_BACKOFF);
                    retry_at = Instant::now() + backoff;
                    tracing::warn!(error = %e, retry_in = ?backoff, "settlement failed; retrying with backoff");
                }
            }
        }
    }

    /// Finds refunds already pending at this provider; returns the block to watch from.
    async fn start_watch(
        &self,
        refunds: &mut HashMap<Address, Watched>,
    ) -> Result<u64, ChainError> {
        let chain = self.chain.chain();
        let provider = self.chain.provider();
        let block = chain.block_number().await?;
        let mut offset = 0;
        loop {
            let page = chain.accounts_of_provider(provider, offset, 200).await?;
            let n = page.items.len() as u64;
            for a in page.items {
                if let Some(r) = a.refund {
                    refunds.insert(
                        a.user,
                        Watched {
                            unlock_at: r.unlock_at,
                        },
                    );
                }
            }
            offset += n;
            if n == 0 || offset >= page.total {
                break;
            }
        }
        Ok(block + 1)
    }

    /// Reads escrow events from `from`; returns the next block to read.
    async fn poll_events(
        &self,
        from: u64,
        refunds: &mut HashMap<Address, Watched>,
    ) -> Result<u64, ChainError> {
        let chain = self.chain.chain();
        let latest = chain.block_number().await?;
        if from > latest {
            return Ok(from);
        }
        // The events read reach at least `latest`.
        let events = chain.escrow_events(self.chain.provider(), from).await?;
        let mut next = latest + 1;
        for e in events {
            next = next.max(e.block + 1);
            match e.change {
                EscrowChange::RefundRequested { amount, unlock_at } => {
                    tracing::info!(user = %e.user, unlock_at, %amount, "refund requested: settling first");
                    refunds.insert(e.user, Watched { unlock_at });
                }
                EscrowChange::RefundCancelled | EscrowChange::RefundClaimed => {
                    refunds.remove(&e.user);
                }
                EscrowChange::Funded => {}
            }
            self.chain.refresh(e.user).await.ok();
        }
        Ok(next)
    }
}
