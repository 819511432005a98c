//! Settlement: submits the newest voucher of every user with unsettled value,
//! in batches, when the unsettled total passes the threshold or the interval
//! has passed; from the moment it sees a user's refund request until the
//! refund is claimed, settles that user's unsettled value first (so
//! settlement lands before the unlock, or the operator is alerted when the
//! chain made that impossible); retries with backoff when the chain fails.
//! One settle transaction is out at a time, driven to its confirmations
//! through drops, fee spikes, stolen nonces and reorgs by `inflight`; a
//! voucher counts as settled in the store only then, and the settlement
//! joins the store's history (the provider page lists it).

mod inflight;

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use tokio::sync::{Mutex, watch};
use tracing::Instrument;
use zg_chain::{ChainError, EscrowChange, RejectReason, Settlement};
use zg_core::{Address, B256, U256, now_unix};

use crate::{
    admission::Tab,
    config::SettlementConfig,
    escrow::ChainView,
    metrics,
    store::{SettleTurn, SettlementRecord, Store, StoreError},
};

use inflight::{InFlight, Step, Submitted};

const TICK: Duration = Duration::from_millis(500);
const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error("settlement failed on chain: {0}")]
    Chain(#[from] ChainError),
    #[error("settlement could not read or record accounts: {0}")]
    Store(#[from] StoreError),
    #[error(
        "{what}: the chain node did not answer within {secs} s; check that the RPC URL is right and the node is up (settlement.rpc_timeout_secs sets the wait)"
    )]
    Timeout { what: &'static str, secs: u64 },
    #[error(
        "the chain's gas price is {price_gwei} gwei, above settlement.max_fee_gwei = {cap_gwei}: settle when fees fall, or raise the cap"
    )]
    FeeCapped {
        price_gwei: String,
        cap_gwei: String,
    },
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
/// user's unsettled value is settled first, on every tick.
struct Watched {
    unlock_at: u64,
    /// Already reported as at risk (inside the margin while the chain fails).
    warned: bool,
    /// Already reported as unlocked with value unsettled.
    missed: bool,
}

/// Collects the money: the store's newest vouchers, the chain view to
/// submit them with (and whose escrow cache it keeps current), the policy.
pub struct Settler {
    store: Arc<dyn Store>,
    chain: Arc<ChainView>,
    policy: SettlementConfig,
    /// The settle transaction out, shared by the loop and `settle_now`, so a
    /// broker never has two settlements of the same vouchers out at once.
    inflight: Mutex<Option<InFlight>>,
    /// Chain calls of the settlement answered so far: tells an error of a
    /// node that is up from a node that is down.
    answered: AtomicU64,
    /// Told of every final settlement (open provider pages refresh).
    live: Arc<zg_web::Live>,
}

impl Settler {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        chain: Arc<ChainView>,
        policy: SettlementConfig,
        live: Arc<zg_web::Live>,
    ) -> Self {
        Self {
            store,
            chain,
            policy,
            inflight: Mutex::new(None),
            answered: AtomicU64::new(0),
            live,
        }
    }

    /// Settles now, every user with unsettled value, each batch to its
    /// confirmations; waits out drops and reorgs, fails on a chain error or
    /// a gas price above the cap (nothing is lost: the vouchers stay
    /// unsettled for the next try).
    pub async fn settle_now(&self) -> Result<Round, SettleError> {
        let span = tracing::info_span!("settle", provider = %self.chain.provider());
        self.settle_all().instrument(span).await
    }

    async fn settle_all(&self) -> Result<Round, SettleError> {
        let mut slot = self.inflight.lock().await;
        let mut round = Round::default();
        // A settlement the loop has out is seen through first, in the turn
        // it holds (taking the turn again here would wait for ourselves).
        if let Some(f) = slot.as_ref() {
            let (users, turn) = (f.users.clone(), f.turn.clone());
            self.see_through(&mut slot, &users, &turn, &mut round)
                .await?;
        }
        // One settler at a time over these books (the live loop, `provider
        // settle` beside it, replicas), reading them once the last is done:
        // no voucher goes out twice, nor two transactions on one nonce.
        let turn = match self.store.settle_turn(true).await? {
            Some(turn) => Arc::new(turn),
            None => return Ok(round),
        };
        let users: Vec<Address> = self
            .store
            .unsettled()
            .await?
            .iter()
            .map(|t| t.user)
            .collect();
        for batch in users.chunks(self.policy.batch_size.max(1)) {
            match self.submit(&mut slot, batch, &turn).await? {
                Submitted::Sent => {
                    self.see_through(&mut slot, batch, &turn, &mut round)
                        .await?
                }
                Submitted::Nothing => {}
                Submitted::FeeCapped { price } => return Err(self.fee_capped(price)),
            }
        }
        if round.settled + round.rejected > 0 {
            tracing::info!(settled = round.settled, rejected = round.rejected, paid = %round.paid, "settlement round done");
        }
        Ok(round)
    }

    /// Drives the settlement in `slot` to its confirmations, sending
    /// `users`' vouchers again when it was lost.
    async fn see_through(
        &self,
        slot: &mut Option<InFlight>,
        users: &[Address],
        turn: &Arc<SettleTurn>,
        round: &mut Round,
    ) -> Result<(), SettleError> {
        loop {
            match self.advance(slot).await? {
                Step::Final(settlement) => {
                    self.record(&settlement, round).await?;
                    return Ok(());
                }
                Step::Lost(_) => match self.submit(slot, users, turn).await? {
                    Submitted::Sent => {}
                    Submitted::Nothing => return Ok(()),
                    Submitted::FeeCapped { price } => return Err(self.fee_capped(price)),
                },
                Step::Pending | Step::Idle => tokio::time::sleep(TICK).await,
            }
        }
    }

    fn fee_capped(&self, price: u128) -> SettleError {
        SettleError::FeeCapped {
            price_gwei: gwei(price),
            cap_gwei: gwei(self.policy.max_fee),
        }
    }

    /// Takes a final settlement into the store, the escrow cache and the metrics.
    async fn record(&self, s: &Settlement, round: &mut Round) -> Result<(), SettleError> {
        metrics::global().settlement(true, s.settled.len(), s.rejected.len());
        for v in &s.settled {
            self.store.record_settled(v.user, v.settled).await?;
            self.chain.settled(v);
        }
        for r in &s.rejected {
            match r.reason {
                RejectReason::NotNewer => {
                    // Another replica (or an earlier run) got there first.
                    let account = self
                        .rpc("reading an escrow account", self.chain.refresh(r.user))
                        .await?;
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
        self.store
            .record_settlement(&SettlementRecord {
                tx: s.outcome.tx_hash,
                block: s.outcome.block,
                final_at: crate::store::now_unix(),
                users: s.settled.iter().map(|v| v.user).collect(),
                rejected: s.rejected.len() as u64,
                paid: s.paid,
            })
            .await?;
        self.live.bump();
        round.settled += s.settled.len();
        round.rejected += s.rejected.len();
        round.paid = round.paid.saturating_add(s.paid);
        round.txs.push(s.outcome.tx_hash);
        tracing::info!(tx = %s.outcome.tx_hash, block = s.outcome.block, settled = s.settled.len(), rejected = s.rejected.len(), paid = %s.paid, "settlement final");
        Ok(())
    }

    /// The settlement loop; ends when `stop` turns true.
    pub(crate) async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut state = LoopState {
            refunds: HashMap::new(),
            queue: VecDeque::new(),
            last_settle: Instant::now(),
            backoff: Duration::ZERO,
            retry_at: Instant::now(),
            capped: false,
        };
        let mut next_block = match self.start_watch(&mut state.refunds).await {
            Ok(block) => block,
            Err(e) => {
                tracing::warn!(error = %e, "reading pending refunds failed; watching from the start of the chain");
                0
            }
        };
        loop {
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                return;
            }
            match self.poll_events(next_block, &mut state.refunds).await {
                Ok(next) => next_block = next,
                Err(e) => tracing::warn!(error = %e, "reading contract events failed"),
            }
            let tabs = match self.store.unsettled().await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(error = %e, "reading accounts failed");
                    continue;
                }
            };
            let troubled = state.capped || !state.backoff.is_zero();
            self.watch_refunds(&mut state.refunds, &tabs, troubled);
            if Instant::now() < state.retry_at {
                continue;
            }
            let answered = self.answered.load(Relaxed);
            let span = tracing::info_span!("settle", provider = %self.chain.provider());
            match self.tick(&mut state, &tabs).instrument(span).await {
                Ok(()) => state.backoff = Duration::ZERO,
                Err(e) => {
                    metrics::global().settlement(false, 0, 0);
                    // A node that answered part of the step is up: a
                    // passing error is retried soon, a node that is down
                    // ever more slowly.
                    state.backoff = if self.answered.load(Relaxed) > answered {
                        MIN_BACKOFF
                    } else {
                        (state.backoff * 2).clamp(MIN_BACKOFF, MAX_BACKOFF)
                    };
                    state.retry_at = Instant::now() + state.backoff;
                    tracing::warn!(error = %e, retry_in = ?state.backoff, "settlement failed; retrying with backoff (the vouchers stay unsettled until a settlement is final)");
                }
            }
        }
    }

    /// One step of the loop: moves the settlement out along, or sends the
    /// next batch when one is due.
    async fn tick(&self, state: &mut LoopState, tabs: &[Tab]) -> Result<(), SettleError> {
        let mut slot = self.inflight.lock().await;
        match self.advance(&mut slot).await? {
            Step::Final(settlement) => {
                self.record(&settlement, &mut Round::default()).await?;
                return Ok(());
            }
            // Their vouchers are still unsettled in the store: send them again first.
            Step::Lost(users) => requeue(state, &users),
            Step::Pending => return Ok(()),
            Step::Idle => {}
        }
        let now = now_unix();
        let margin = self.policy.refund_margin_secs;
        let mut batch: Vec<Address> = tabs
            .iter()
            .filter(|a| {
                state
                    .refunds
                    .get(&a.user)
                    .is_some_and(|w| w.unlock_at.saturating_add(margin) > now)
            })
            .map(|a| a.user)
            .collect();
        let unsettled = tabs
            .iter()
            .fold(U256::ZERO, |t, a| t.saturating_add(a.unsettled()));
        let due = !unsettled.is_zero()
            && (unsettled >= self.policy.threshold
                || state.last_settle.elapsed() >= Duration::from_secs(self.policy.interval_secs));
        if state.queue.is_empty() && due {
            state.queue = tabs.iter().map(|t| t.user).collect();
            state.last_settle = Instant::now();
        }
        let size = self.policy.batch_size.max(1);
        let mut chosen: HashSet<Address> = batch.iter().copied().collect();
        while batch.len() < size {
            let Some(user) = state.queue.pop_front() else {
                break;
            };
            if chosen.insert(user) {
                batch.push(user);
            }
        }
        batch.truncate(size);
        if batch.is_empty() {
            return Ok(());
        }
        // Another settler's turn (`provider settle`, a replica): this tick is
        // skipped; the books are read again once it is done.
        let Some(turn) = self.store.settle_turn(false).await? else {
            requeue(state, &batch);
            return Ok(());
        };
        match self.submit(&mut slot, &batch, &Arc::new(turn)).await {
            Ok(Submitted::FeeCapped { price }) => {
                metrics::global().fee_capped();
                if !state.capped {
                    tracing::warn!(price_gwei = %gwei(price), cap_gwei = %gwei(self.policy.max_fee), "the chain's gas price is above settlement.max_fee_gwei: waiting for it to fall before settling");
                }
                state.capped = true;
                requeue(state, &batch);
            }
            Ok(_) => {
                if state.capped {
                    tracing::info!("gas price back under settlement.max_fee_gwei: settling");
                }
                state.capped = false;
            }
            Err(e) => {
                requeue(state, &batch);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Alerts (logs and metrics) when a pending refund's unlock comes near
    /// while settlement is failing, and when one unlocks while it still
    /// fails with value unsettled: from then on the user can claim escrow
    /// that pays for answers already served. (Value unsettled past an
    /// unlock while settlement works is no alarm: admission stopped counting
    /// the refund at the margin, so what came since is backed by what stays.)
    fn watch_refunds(&self, refunds: &mut HashMap<Address, Watched>, tabs: &[Tab], troubled: bool) {
        let now = now_unix();
        let margin = self.policy.refund_margin_secs;
        for tab in tabs {
            let Some(w) = refunds.get_mut(&tab.user) else {
                continue;
            };
            let unsettled = tab.unsettled();
            if troubled && now >= w.unlock_at && !w.missed {
                w.missed = true;
                metrics::global().refund_missed();
                tracing::error!(user = %tab.user, unlock_at = w.unlock_at, %unsettled, "a refund unlocked before settlement was final: the user can claim escrow that pays for answers already served");
            } else if troubled && now.saturating_add(margin) >= w.unlock_at && !w.warned {
                w.warned = true;
                metrics::global().refund_at_risk();
                tracing::warn!(user = %tab.user, unlock_at = w.unlock_at, %unsettled, "a refund unlocks within settlement.refund_margin_secs and settlement is failing: the user's unsettled value is at risk");
            }
        }
    }

    /// Finds refunds already pending at this provider; returns the block to watch from.
    async fn start_watch(
        &self,
        refunds: &mut HashMap<Address, Watched>,
    ) -> Result<u64, SettleError> {
        let chain = self.chain.chain();
        let provider = self.chain.provider();
        let block = self
            .rpc("reading the block number", chain.block_number())
            .await?;
        let mut offset = 0;
        loop {
            let page = self
                .rpc(
                    "reading the provider's accounts",
                    chain.accounts_of_provider(provider, offset, 200),
                )
                .await?;
            let n = page.items.len() as u64;
            for a in page.items {
                if let Some(r) = a.refund {
                    refunds.insert(a.user, watched(r.unlock_at));
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
    ) -> Result<u64, SettleError> {
        let chain = self.chain.chain();
        let latest = self
            .rpc("reading the block number", chain.block_number())
            .await?;
        if from > latest {
            return Ok(from);
        }
        // The events read reach at least `latest`.
        let events = self
            .rpc(
                "reading contract events",
                chain.escrow_events(self.chain.provider(), from),
            )
            .await?;
        let mut next = latest + 1;
        for e in events {
            next = next.max(e.block + 1);
            match e.change {
                EscrowChange::RefundRequested { amount, unlock_at } => {
                    tracing::info!(user = %e.user, unlock_at, %amount, "refund requested: settling first");
                    refunds.insert(e.user, watched(unlock_at));
                }
                EscrowChange::RefundCancelled | EscrowChange::RefundClaimed => {
                    refunds.remove(&e.user);
                }
                EscrowChange::Funded => {}
            }
            let _ = self
                .rpc("reading an escrow account", self.chain.refresh(e.user))
                .await;
        }
        Ok(next)
    }
}

/// What the loop carries from tick to tick.
struct LoopState {
    refunds: HashMap<Address, Watched>,
    /// Users of the round under way not yet in a settle transaction.
    queue: VecDeque<Address>,
    last_settle: Instant,
    backoff: Duration,
    retry_at: Instant,
    /// The last try waited for the gas price to fall under the cap.
    capped: bool,
}

fn watched(unlock_at: u64) -> Watched {
    Watched {
        unlock_at,
        warned: false,
        missed: false,
    }
}

/// Puts a batch that was not sent back at the head of the round.
fn requeue(state: &mut LoopState, batch: &[Address]) {
    for user in batch.iter().rev() {
        if !state.queue.contains(user) {
            state.queue.push_front(*user);
        }
    }
}

/// Wei per gas as decimal gwei, for people.
fn gwei(wei: u128) -> String {
    let whole = wei / 1_000_000_000;
    let frac = wei % 1_000_000_000;
    if frac == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{}", format!("{frac:09}").trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn gwei_is_exact() {
        assert_eq!(super::gwei(100_000_000_000), "100");
        assert_eq!(super::gwei(1_500_000_000), "1.5");
        assert_eq!(super::gwei(7), "0.000000007");
    }
}
