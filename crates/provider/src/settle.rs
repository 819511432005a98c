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

use alloy::providers::Provider;
use tokio::sync::watch;
use tracing::Instrument;
use zg_chain::{ChainError, RejectReason, bindings::ZgServing::ZgServingEvents};
use zg_core::{Address, B256, U256};

use crate::{broker::Broker, escrow::now_unix, store::StoreError};

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

/// Settles now: every user with unsettled value, or only `only`.
pub async fn settle_now(
    broker: &Broker,
    only: Option<&HashSet<Address>>,
) -> Result<Round, SettleError> {
    let accounts = broker.store.accounts().await?;
    let due: Vec<_> = accounts
        .iter()
        .filter(|a| !a.unsettled().is_zero())
        .filter(|a| only.is_none_or(|o| o.contains(&a.user)))
        .filter_map(|a| a.voucher)
        .collect();
    let mut round = Round::default();
    let chain = broker.chain.chain();
    for batch in due.chunks(broker.config.settlement.batch_size.max(1)) {
        let span =
            tracing::info_span!("settle", provider = %broker.provider, vouchers = batch.len());
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
            broker.store.record_settled(s.user, s.settled).await?;
            broker.chain.refresh(s.user).await.ok();
        }
        for r in &settlement.rejected {
            match r.reason {
                RejectReason::NotNewer => {
                    // Another replica (or an earlier run) got there first.
                    let account = broker.chain.refresh(r.user).await?;
                    broker.store.record_settled(r.user, account.settled).await?;
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

/// A pending refund the loop watches: until it is claimed or cancelled, the
/// user's unsettled value is settled on every tick.
struct Watched {
    unlock_at: u64,
}

/// The settlement loop; ends when `stop` turns true.
pub async fn run(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let policy = broker.config.settlement.clone();
    let interval = Duration::from_secs(policy.interval_secs);
    let margin = policy.refund_margin_secs;
    let mut refunds: HashMap<Address, Watched> = HashMap::new();
    let mut next_block = match start_watch(&broker, &mut refunds).await {
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
        match poll_events(&broker, next_block, &mut refunds).await {
            Ok(next) => next_block = next,
            Err(e) => tracing::warn!(error = %e, "reading contract events failed"),
        }
        if Instant::now() < retry_at {
            continue;
        }
        let accounts = match broker.store.accounts().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "reading accounts failed");
                continue;
            }
        };
        let unsettled: U256 = accounts
            .iter()
            .fold(U256::ZERO, |t, a| t.saturating_add(a.unsettled()));
        let now = now_unix();
        let refund_due: HashSet<Address> = accounts
            .iter()
            .filter(|a| !a.unsettled().is_zero())
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
        match settle_now(&broker, only).await {
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
    broker: &Broker,
    refunds: &mut HashMap<Address, Watched>,
) -> Result<u64, ChainError> {
    let chain = broker.chain.chain();
    let block = chain
        .provider()
        .get_block_number()
        .await
        .map_err(|e| ChainError::Unexpected {
            action: "reading the block number".into(),
            reason: e.to_string(),
        })?;
    let mut offset = 0;
    loop {
        let page = chain
            .accounts_of_provider(broker.provider, offset, 200)
            .await?;
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

/// Reads events from `from`; returns the next block to read.
async fn poll_events(
    broker: &Broker,
    from: u64,
    refunds: &mut HashMap<Address, Watched>,
) -> Result<u64, ChainError> {
    let latest = broker
        .chain
        .chain()
        .provider()
        .get_block_number()
        .await
        .map_err(|e| ChainError::Unexpected {
            action: "reading the block number".into(),
            reason: e.to_string(),
        })?;
    if from > latest {
        return Ok(from);
    }
    let events = broker.chain.chain().events(from).await?;
    let mut next = from;
    for e in events {
        next = next.max(e.block + 1);
        match e.event {
            ZgServingEvents::RefundRequested(r) if r.provider == broker.provider => {
                tracing::info!(user = %r.user, unlock_at = r.unlockAt, amount = %r.amount, "refund requested: settling first");
                refunds.insert(
                    r.user,
                    Watched {
                        unlock_at: r.unlockAt,
                    },
                );
                broker.chain.refresh(r.user).await.ok();
            }
            ZgServingEvents::RefundCancelled(r) if r.provider == broker.provider => {
                refunds.remove(&r.user);
                broker.chain.refresh(r.user).await.ok();
            }
            ZgServingEvents::RefundClaimed(r) if r.provider == broker.provider => {
                refunds.remove(&r.user);
                broker.chain.refresh(r.user).await.ok();
            }
            ZgServingEvents::Funded(r) if r.provider == broker.provider => {
                broker.chain.refresh(r.user).await.ok();
            }
            _ => {}
        }
    }
    Ok(next)
}
