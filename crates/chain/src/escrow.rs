//! Escrow per (user, provider): funding, time-locked refunds, and the account views.

use crate::{ChainClient, ChainError, Outcome, Page, bindings::ZgServing};
use alloy::primitives::{Address, U256};

/// One (user, provider) escrow account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscrowAccount {
    pub user: Address,
    pub provider: Address,
    /// What settlement can still take, in neuron.
    pub escrow: U256,
    /// Everything settled to the provider so far; a voucher pays `cumulative - settled`.
    pub settled: U256,
    pub refund: Option<PendingRefund>,
}

/// A requested refund: `amount` (at most what settlement leaves) returns at `unlock_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingRefund {
    pub amount: U256,
    /// Unix time from which `claim_refund` succeeds.
    pub unlock_at: u64,
}

impl From<ZgServing::Account> for EscrowAccount {
    fn from(a: ZgServing::Account) -> Self {
        let refund = (!a.refundAmount.is_zero()).then_some(PendingRefund {
            amount: a.refundAmount,
            unlock_at: a.refundUnlockAt,
        });
        Self {
            user: a.user,
            provider: a.provider,
            escrow: a.escrow,
            settled: a.settled,
            refund,
        }
    }
}

impl ChainClient {
    /// Moves `amount` of the ledger balance into escrow for `provider`
    /// (cancelling a pending refund there).
    pub async fn fund(&self, provider: Address, amount: U256) -> Result<Outcome, ChainError> {
        let action = format!("funding {amount} neuron of escrow for provider {provider}");
        self.send(&action, self.contract().fund(provider, amount))
            .await
    }

    /// Starts the lock after which `amount` of the escrow at `provider` can be claimed.
    pub async fn request_refund(
        &self,
        provider: Address,
        amount: U256,
    ) -> Result<Outcome, ChainError> {
        let action = format!("requesting a refund of {amount} neuron from provider {provider}");
        self.send(&action, self.contract().requestRefund(provider, amount))
            .await
    }

    /// Returns an unlocked refund to the ledger balance.
    pub async fn claim_refund(&self, provider: Address) -> Result<Outcome, ChainError> {
        let action = format!("claiming the refund from provider {provider}");
        self.send(&action, self.contract().claimRefund(provider))
            .await
    }

    pub async fn account(
        &self,
        user: Address,
        provider: Address,
    ) -> Result<EscrowAccount, ChainError> {
        let action = format!("reading the escrow of {user} at provider {provider}");
        Ok(self
            .view(&action, self.contract().account(user, provider))
            .await?
            .into())
    }

    /// The accounts users hold at `provider`, in the order they were first funded.
    pub async fn accounts_of_provider(
        &self,
        provider: Address,
        offset: u64,
        limit: u64,
    ) -> Result<Page<EscrowAccount>, ChainError> {
        let action = format!("listing the accounts at provider {provider}");
        let call =
            self.contract()
                .accountsOfProvider(provider, U256::from(offset), U256::from(limit));
        let page = self.view(&action, call).await?;
        Ok(Page {
            items: page.accounts.into_iter().map(Into::into).collect(),
            total: page.total.saturating_to(),
        })
    }

    /// The accounts `user` holds at providers, in the order they were first funded.
    pub async fn accounts_of_user(
        &self,
        user: Address,
        offset: u64,
        limit: u64,
    ) -> Result<Page<EscrowAccount>, ChainError> {
        let action = format!("listing the accounts of user {user}");
        let call = self
            .contract()
            .accountsOfUser(user, U256::from(offset), U256::from(limit));
        let page = self.view(&action, call).await?;
        Ok(Page {
            items: page.accounts.into_iter().map(Into::into).collect(),
            total: page.total.saturating_to(),
        })
    }

    /// Seconds between a refund request and its unlock.
    pub async fn lock_period(&self) -> Result<u64, ChainError> {
        self.view("reading the lock period", self.contract().lockPeriod())
            .await
    }

    /// The bounds the owner may set the lock period within, in seconds.
    pub async fn lock_period_bounds(&self) -> Result<(u64, u64), ChainError> {
        let min = self.view(
            "reading the lock period bounds",
            self.contract().MIN_LOCK_PERIOD(),
        );
        let max = self.view(
            "reading the lock period bounds",
            self.contract().MAX_LOCK_PERIOD(),
        );
        Ok((min.await?, max.await?))
    }

    /// Owner only: sets the refund lock (60 s ..= 30 days).
    pub async fn set_lock_period(&self, seconds: u64) -> Result<Outcome, ChainError> {
        let action = format!("setting the lock period to {seconds} s");
        self.send(&action, self.contract().setLockPeriod(seconds))
            .await
    }
}

/// A change to one (user, provider) escrow that a provider watches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscrowChange {
    Funded,
    RefundRequested { amount: U256, unlock_at: u64 },
    RefundCancelled,
    RefundClaimed,
}

/// An [`EscrowChange`] of `user`'s escrow, in block `block`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EscrowEvent {
    pub block: u64,
    pub user: Address,
    pub change: EscrowChange,
}

impl ChainClient {
    /// The escrow events of every user at `provider` from `from_block` to the
    /// latest block.
    pub async fn escrow_events(
        &self,
        provider: Address,
        from_block: u64,
    ) -> Result<Vec<EscrowEvent>, ChainError> {
        use ZgServing::ZgServingEvents as E;
        let events = self.events(from_block).await?;
        Ok(events
            .into_iter()
            .filter_map(|e| {
                let (user, at, change) = match e.event {
                    E::Funded(r) => (r.user, r.provider, EscrowChange::Funded),
                    E::RefundRequested(r) => (
                        r.user,
                        r.provider,
                        EscrowChange::RefundRequested {
                            amount: r.amount,
                            unlock_at: r.unlockAt,
                        },
                    ),
                    E::RefundCancelled(r) => (r.user, r.provider, EscrowChange::RefundCancelled),
                    E::RefundClaimed(r) => (r.user, r.provider, EscrowChange::RefundClaimed),
                    _ => return None,
                };
                (at == provider).then_some(EscrowEvent {
                    block: e.block,
                    user,
                    change,
                })
            })
            .collect())
    }
}
