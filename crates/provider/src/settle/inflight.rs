//! The settle transaction out, from signing to its confirmations. It is
//! signed before it is sent, so its hash is known even when the node's
//! answer is lost; every later version keeps its nonce, so at most one of
//! them can ever be mined and nothing is paid twice. Each step reads the
//! wallet's mined nonce, then the receipts: mined and confirmed is final;
//! mined then gone is a reorg (sent again); the nonce spent by a
//! transaction that is none of ours is lost (its vouchers go out again with
//! a fresh nonce); not mined for `resubmit_secs` is replaced with fees
//! bumped, never above `max_fee_gwei`.

use std::{
    future::Future,
    sync::{Arc, atomic::Ordering::Relaxed},
    time::Instant,
};

use tokio::time::{Duration, timeout};
use zg_chain::{ChainError, Fees, Settlement, SignedTx, TxState};
use zg_core::{Address, Signature, Voucher};

use super::{SettleError, Settler};
use crate::{metrics, store::SettleTurn};

/// How long the wallet's nonce must stay spent with no receipt of ours
/// before the settlement counts as lost: a node can count a mined nonce a
/// moment before it serves the block's receipts (anvil does, and so does an
/// RPC endpoint balanced over several nodes), and sending again then would
/// only be rejected as not newer.
const TAKEN_GRACE: Duration = Duration::from_secs(3);

/// A replacement must outbid the transaction it replaces (nodes ask 10%).
fn bump(wei: u128) -> u128 {
    wei.saturating_add(wei / 8).saturating_add(1)
}

/// Gas above the estimate: the batch's cost can move between estimate and block.
fn with_headroom(gas: u64) -> u64 {
    gas.saturating_add(gas / 4)
}

/// A settle transaction out, in all the versions sent with its nonce.
pub(super) struct InFlight {
    /// The users whose newest vouchers it carries.
    pub(super) users: Vec<Address>,
    /// The settlement turn, held until the settlement is final or lost, so
    /// no other settler reads these vouchers as unsettled meanwhile.
    pub(super) turn: Arc<SettleTurn>,
    batch: Vec<(Voucher, Signature)>,
    /// The newest version.
    tx: SignedTx,
    /// Every version's hash: any one of them may be the one mined.
    hashes: Vec<zg_core::B256>,
    /// When the newest version was last accepted by the node (None: not yet).
    sent_at: Option<Instant>,
    /// The block a version was seen mined in, while waiting for confirmations.
    mined: Option<u64>,
    /// When the wallet's mined nonce was first seen past this one with no
    /// receipt of ours found (None: not seen).
    taken_at: Option<Instant>,
}

/// Where the settlement out stands after a step.
pub(super) enum Step {
    /// Nothing is out.
    Idle,
    /// Out, not final yet.
    Pending,
    /// Mined with the configured confirmations on top; the slot is empty again.
    Final(Box<Settlement>),
    /// It can never be mined (its nonce went to another transaction, or it
    /// reverted); the vouchers of these users are still unsettled. The slot
    /// is empty again.
    Lost(Vec<Address>),
}

/// What asking to send a batch did.
pub(super) enum Submitted {
    Sent,
    /// None of the users has unsettled value (any more).
    Nothing,
    /// The chain's gas price (wei) is above the cap: nothing was sent.
    FeeCapped {
        price: u128,
    },
}

/// Empties the slot; the users its settlement carried.
fn take_users(slot: &mut Option<InFlight>) -> Vec<Address> {
    slot.take().map(|f| f.users).unwrap_or_default()
}

impl Settler {
    /// A chain call that gives up after `rpc_timeout_secs`.
    pub(super) async fn rpc<T>(
        &self,
        what: &'static str,
        call: impl Future<Output = Result<T, ChainError>>,
    ) -> Result<T, SettleError> {
        let secs = self.policy.rpc_timeout_secs;
        match timeout(Duration::from_secs(secs), call).await {
            Ok(Ok(answer)) => {
                self.answered.fetch_add(1, Relaxed);
                Ok(answer)
            }
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(SettleError::Timeout { what, secs }),
        }
    }

    /// Signs a settle transaction of `users`' newest vouchers into `slot`
    /// (which must be empty) and sends it, unless the chain's price is over
    /// the cap. The caller holds the settlement `turn`; the settlement keeps
    /// it while it is out.
    pub(super) async fn submit(
        &self,
        slot: &mut Option<InFlight>,
        users: &[Address],
        turn: &Arc<SettleTurn>,
    ) -> Result<Submitted, SettleError> {
        let mut batch = Vec::with_capacity(users.len());
        let mut carried = Vec::with_capacity(users.len());
        for user in users {
            let tab = self.store.tab(*user).await?;
            if let Some(tab) = tab.filter(|t| !t.unsettled().is_zero())
                && let Some(voucher) = tab.voucher
            {
                batch.push(voucher);
                carried.push(*user);
            }
        }
        if batch.is_empty() {
            return Ok(Submitted::Nothing);
        }
        let chain = self.chain.chain();
        let price = self.rpc("reading the gas price", chain.gas_price()).await?;
        if price > self.policy.max_fee {
            return Ok(Submitted::FeeCapped { price });
        }
        let gas = self
            .rpc("estimating the settlement's gas", chain.settle_gas(&batch))
            .await?;
        let suggested = self.rpc("estimating fees", chain.suggested_fees()).await?;
        // Pending: a transaction of the wallet already in the pool keeps its nonce.
        let nonce = self
            .rpc("reading the wallet's nonce", chain.nonce(true))
            .await?;
        let max_fee = suggested.max_fee.min(self.policy.max_fee).max(price);
        let fees = Fees {
            max_fee,
            priority_fee: suggested.priority_fee.min(max_fee),
        };
        let tx = self
            .rpc(
                "signing the settlement",
                chain.sign_settle(&batch, nonce, with_headroom(gas), fees),
            )
            .await?;
        tracing::info!(tx = %tx.hash, nonce, vouchers = batch.len(), max_fee = fees.max_fee, "settlement signed; sending");
        *slot = Some(InFlight {
            users: carried,
            turn: turn.clone(),
            batch,
            hashes: vec![tx.hash],
            tx,
            sent_at: None,
            mined: None,
            taken_at: None,
        });
        // A failed send leaves it out, unsent: the next step sends it again.
        match self.advance(slot).await? {
            Step::Lost(_) => Err(SettleError::Chain(ChainError::Unexpected {
                action: "sending a settlement".into(),
                reason: "its nonce was taken as it was sent; sending again".into(),
            })),
            _ => Ok(Submitted::Sent),
        }
    }

    /// Moves the settlement in `slot` one step along; see the module's doc.
    pub(super) async fn advance(&self, slot: &mut Option<InFlight>) -> Result<Step, SettleError> {
        let Some(f) = slot.as_mut() else {
            return Ok(Step::Idle);
        };
        let chain = self.chain.chain();
        // The nonce first: a version mined after this read still shows its receipt below.
        let mined_nonce = self
            .rpc("reading the wallet's nonce", chain.nonce(false))
            .await?;
        let head = self
            .rpc("reading the block number", chain.block_number())
            .await?;
        let mut found = None;
        for hash in f.hashes.iter().rev() {
            match self
                .rpc("reading a settlement's receipt", chain.settle_state(*hash))
                .await?
            {
                TxState::Unknown => {}
                state => {
                    found = Some(state);
                    break;
                }
            }
        }
        let confirmations = self.policy.confirmations;
        match found {
            Some(TxState::Mined(settlement)) => {
                f.taken_at = None;
                let block = settlement.outcome.block;
                if f.mined != Some(block) {
                    tracing::info!(tx = %settlement.outcome.tx_hash, block, confirmations, "settlement mined; waiting for its confirmations");
                    f.mined = Some(block);
                }
                if head >= block.saturating_add(confirmations) {
                    *slot = None;
                    return Ok(Step::Final(settlement));
                }
                return Ok(Step::Pending);
            }
            Some(TxState::Failed { block }) => {
                if head >= block.saturating_add(confirmations) {
                    tracing::error!(
                        nonce = f.tx.nonce,
                        block,
                        "a settlement was mined but reverted: its vouchers stay unsettled and go out again"
                    );
                    metrics::global().settlement(false, 0, 0);
                    return Ok(Step::Lost(take_users(slot)));
                }
                return Ok(Step::Pending);
            }
            _ => {}
        }
        if let Some(block) = f.mined.take() {
            tracing::warn!(tx = %f.tx.hash, block, "a mined settlement is gone from the chain (a reorg): sending it again");
            metrics::global().resubmitted("reorg");
            f.sent_at = None;
        }
        if mined_nonce > f.tx.nonce {
            let since = *f.taken_at.get_or_insert_with(Instant::now);
            if since.elapsed() < TAKEN_GRACE {
                return Ok(Step::Pending);
            }
            tracing::warn!(nonce = f.tx.nonce, wallet = %chain.wallet(), "another transaction of the wallet took the settlement's nonce: its vouchers go out again with a fresh nonce");
            metrics::global().resubmitted("nonce_taken");
            return Ok(Step::Lost(take_users(slot)));
        }
        let resubmit = Duration::from_secs(self.policy.resubmit_secs);
        match f.sent_at {
            None => {
                self.rpc("sending the settlement", chain.broadcast(&f.tx))
                    .await?;
                f.sent_at = Some(Instant::now());
            }
            Some(at) if at.elapsed() >= resubmit => self.replace(f).await?,
            Some(_) => {}
        }
        Ok(Step::Pending)
    }

    /// Replaces a settlement not mined in time with one at the same nonce
    /// and higher fees, within the cap; at the cap, sends the same one again
    /// (a node that dropped it takes it back).
    async fn replace(&self, f: &mut InFlight) -> Result<(), SettleError> {
        let chain = self.chain.chain();
        let suggested = self.rpc("estimating fees", chain.suggested_fees()).await?;
        let cap = self.policy.max_fee;
        let old = f.tx.fees;
        let max_fee = suggested.max_fee.max(bump(old.max_fee));
        let priority_fee = suggested.priority_fee.max(bump(old.priority_fee));
        let fees = if max_fee <= cap {
            Fees {
                max_fee,
                priority_fee: priority_fee.min(max_fee),
            }
        } else if bump(old.max_fee) <= cap {
            Fees {
                max_fee: cap,
                priority_fee: priority_fee.min(cap),
            }
        } else {
            metrics::global().fee_capped();
            tracing::warn!(tx = %f.tx.hash, nonce = f.tx.nonce, secs = self.policy.resubmit_secs, "settlement not mined in time and higher fees would pass settlement.max_fee_gwei: sending the same transaction again");
            self.rpc("sending the settlement again", chain.broadcast(&f.tx))
                .await?;
            f.sent_at = Some(Instant::now());
            return Ok(());
        };
        let tx = self
            .rpc(
                "signing the replacement settlement",
                chain.sign_settle(&f.batch, f.tx.nonce, f.tx.gas, fees),
            )
            .await?;
        tracing::warn!(old = %f.tx.hash, new = %tx.hash, nonce = tx.nonce, max_fee = fees.max_fee, secs = self.policy.resubmit_secs, "settlement not mined in time: replaced with higher fees (same nonce)");
        metrics::global().resubmitted("stuck");
        f.hashes.push(tx.hash);
        f.tx = tx;
        f.sent_at = None;
        self.rpc("sending the replacement settlement", chain.broadcast(&f.tx))
            .await?;
        f.sent_at = Some(Instant::now());
        Ok(())
    }
}
