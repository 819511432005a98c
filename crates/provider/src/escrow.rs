//! What the broker knows of the chain per user: the escrow account (cached,
//! refreshed when admission would refuse, on refund events and after
//! settlement, from its result) and the delegated voucher signer (never
//! cached as valid: read from the chain for every voucher a delegate signed,
//! so a revocation counts from the block that mined it; docs/provider.md).

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use zg_chain::{ChainClient, ChainError, EscrowAccount, SettledVoucher};
use zg_core::{Address, U256, now_unix};

const DELEGATE_REFRESH: Duration = Duration::from_secs(1);

pub(crate) struct ChainView {
    chain: ChainClient,
    provider: Address,
    /// Seconds before a refund's unlock at which its amount stops counting.
    refund_margin: u64,
    escrow: Mutex<HashMap<Address, EscrowAccount>>,
    /// Per user, escrow a transaction out is moving elsewhere (a
    /// fine-tuning job's reservation): not counted until it is mined and read.
    held: Mutex<HashMap<Address, U256>>,
    /// Per user, the last signer refused and when.
    refused: Mutex<HashMap<Address, (Address, Instant)>>,
}

impl ChainView {
    pub(crate) fn new(chain: ChainClient, refund_margin: u64) -> Self {
        Self {
            provider: chain.wallet(),
            chain,
            refund_margin,
            escrow: Mutex::default(),
            held: Mutex::default(),
            refused: Mutex::default(),
        }
    }

    pub(crate) fn chain(&self) -> &ChainClient {
        &self.chain
    }

    pub(crate) fn provider(&self) -> Address {
        self.provider
    }

    /// The cap on what `user` may owe: escrow + settled, less a pending refund
    /// that unlocks within the margin (settlement may not land before it).
    /// Reads the chain when the user is not cached or `refresh` is set.
    pub(crate) async fn cap(&self, user: Address, refresh: bool) -> Result<U256, ChainError> {
        let cached = if refresh {
            None
        } else {
            self.lock_escrow().get(&user).cloned()
        };
        let account = match cached {
            Some(a) => a,
            None => self.refresh(user).await?,
        };
        let held = self.lock_held().get(&user).copied().unwrap_or_default();
        Ok(cap_of(&account, now_unix(), self.refund_margin).saturating_sub(held))
    }

    /// Takes `amount` of `user`'s escrow out of [`ChainView::cap`] until the
    /// returned guard is dropped: for a transaction that moves escrow out
    /// (read the account again before dropping it).
    pub(crate) fn hold(&self, user: Address, amount: U256) -> Hold<'_> {
        let mut held = self.lock_held();
        let total = held.entry(user).or_default();
        *total = total.saturating_add(amount);
        Hold {
            view: self,
            user,
            amount,
        }
    }

    /// Reads `user`'s escrow account from the chain into the cache.
    pub(crate) async fn refresh(&self, user: Address) -> Result<EscrowAccount, ChainError> {
        let account = self.chain.account(user, self.provider).await?;
        self.lock_escrow().insert(user, account.clone());
        Ok(account)
    }

    /// Drops `user`'s cached account: the next [`ChainView::cap`] reads the chain.
    pub(crate) fn forget(&self, user: Address) {
        self.lock_escrow().remove(&user);
    }

    /// Takes a voucher's settlement into the cache: the transaction's
    /// events carry the escrow and settled total after it, so no read is needed.
    pub(crate) fn settled(&self, s: &SettledVoucher) {
        if let Some(account) = self.lock_escrow().get_mut(&s.user) {
            account.escrow = s.escrow;
            account.settled = s.settled;
            // A pending refund returns at most what settlement left.
            if let Some(refund) = &mut account.refund {
                refund.amount = refund.amount.min(s.escrow);
            }
        }
    }

    /// Whether `signer` may sign vouchers for `user` (the user delegated it
    /// on chain), read from the chain's newest block every time: a delegate
    /// the user revoked is refused from the block that mined the revocation,
    /// since settlement would refuse its vouchers from then on too. A signer
    /// just refused is not looked up again for a second, so a flood of one
    /// forged key costs one chain read per second.
    pub(crate) async fn is_delegate(
        &self,
        user: Address,
        signer: Address,
    ) -> Result<bool, ChainError> {
        let refused = self.lock_refused().get(&user).copied();
        if refused.is_some_and(|(refused, at)| refused == signer && at.elapsed() < DELEGATE_REFRESH)
        {
            return Ok(false);
        }
        let ok = self.chain.voucher_signer(user).await? == Some(signer);
        let mut refused = self.lock_refused();
        if ok {
            refused.remove(&user);
        } else {
            refused.insert(user, (signer, Instant::now()));
        }
        Ok(ok)
    }

    fn lock_escrow(&self) -> std::sync::MutexGuard<'_, HashMap<Address, EscrowAccount>> {
        self.escrow.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_held(&self) -> std::sync::MutexGuard<'_, HashMap<Address, U256>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_refused(&self) -> std::sync::MutexGuard<'_, HashMap<Address, (Address, Instant)>> {
        self.refused.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Escrow held out of [`ChainView::cap`] while it lives.
pub(crate) struct Hold<'a> {
    view: &'a ChainView,
    user: Address,
    amount: U256,
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        let mut held = self.view.lock_held();
        if let Some(total) = held.get_mut(&self.user) {
            *total = total.saturating_sub(self.amount);
            if total.is_zero() {
                held.remove(&self.user);
            }
        }
    }
}

/// escrow + settled is everything settlement can ever collect from the user;
/// a refund that unlocks before `now + margin` leaves with its amount.
pub(crate) fn cap_of(account: &EscrowAccount, now: u64, margin: u64) -> U256 {
    let total = account.escrow.saturating_add(account.settled);
    match account.refund {
        Some(r) if r.unlock_at <= now.saturating_add(margin) => total.saturating_sub(r.amount),
        _ => total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zg_chain::PendingRefund;

    #[test]
    fn a_refund_counts_only_near_its_unlock() {
        let mut account = EscrowAccount {
            user: Address::repeat_byte(1),
            provider: Address::repeat_byte(2),
            escrow: U256::from(100u64),
            settled: U256::from(40u64),
            refund: Some(PendingRefund {
                amount: U256::from(30u64),
                unlock_at: 1_000,
            }),
        };
        assert_eq!(cap_of(&account, 0, 600), U256::from(140u64));
        assert_eq!(cap_of(&account, 400, 600), U256::from(110u64));
        account.refund = None;
        assert_eq!(cap_of(&account, 400, 600), U256::from(140u64));
    }
}
