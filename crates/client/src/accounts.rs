//! The user's money on chain, through zg-chain: ledger balance, escrow per
//! provider, refunds, the delegated voucher signer, and a one-call summary.

use crate::{ClientError, error::show};
use serde::Serialize;
use zg_chain::{ChainClient, EscrowAccount, Outcome};
use zg_core::{Address, U256};

/// The user's wallet against one deployment.
#[derive(Debug, Clone)]
pub struct Accounts {
    chain: ChainClient,
}

/// Everything the user holds, for `zg-serving user ledger`.
#[derive(Debug, Clone, Serialize)]
pub struct LedgerSummary {
    pub user: Address,
    /// Native tokens in the wallet, outside the contract.
    pub wallet: U256,
    /// Free ledger balance (withdrawable, or to fund escrow from).
    pub balance: U256,
    pub escrows: Vec<EscrowView>,
    /// The delegated voucher signer, if one is set.
    pub voucher_signer: Option<Address>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EscrowView {
    pub provider: Address,
    pub escrow: U256,
    pub settled: U256,
    pub refund_amount: U256,
    pub refund_unlock_at: u64,
}

impl From<EscrowAccount> for EscrowView {
    fn from(a: EscrowAccount) -> Self {
        Self {
            provider: a.provider,
            escrow: a.escrow,
            settled: a.settled,
            refund_amount: a.refund.map(|r| r.amount).unwrap_or_default(),
            refund_unlock_at: a.refund.map(|r| r.unlock_at).unwrap_or_default(),
        }
    }
}

impl Accounts {
    pub fn new(chain: ChainClient) -> Self {
        Self { chain }
    }

    pub fn chain(&self) -> &ChainClient {
        &self.chain
    }

    pub fn user(&self) -> Address {
        self.chain.wallet()
    }

    pub async fn deposit(&self, amount: U256) -> Result<Outcome, ClientError> {
        let wallet = self.chain.native_balance(self.user()).await?;
        if wallet < amount {
            return Err(ClientError::Budget(format!(
                "the wallet {} holds {}, {} was asked for: send tokens to it first",
                self.user(),
                show(wallet),
                show(amount)
            )));
        }
        Ok(self.chain.deposit(amount).await?)
    }

    pub async fn withdraw(&self, amount: U256) -> Result<Outcome, ClientError> {
        Ok(self.chain.withdraw(amount).await?)
    }

    /// Moves `amount` of the ledger into escrow for `provider`.
    pub async fn fund(&self, provider: Address, amount: U256) -> Result<Outcome, ClientError> {
        let balance = self.chain.balance_of(self.user()).await?;
        if balance < amount {
            return Err(ClientError::Budget(format!(
                "the ledger balance is {}, funding {} needs more: deposit first with `zg-serving user deposit --amount {}`",
                show(balance),
                show(amount),
                zg_core::format_amount(amount - balance)
            )));
        }
        Ok(self.chain.fund(provider, amount).await?)
    }

    pub async fn request_refund(
        &self,
        provider: Address,
        amount: U256,
    ) -> Result<Outcome, ClientError> {
        Ok(self.chain.request_refund(provider, amount).await?)
    }

    pub async fn claim_refund(&self, provider: Address) -> Result<Outcome, ClientError> {
        Ok(self.chain.claim_refund(provider).await?)
    }

    /// Lets `signer` sign vouchers for this user (a hot key for a gateway).
    pub async fn set_voucher_signer(&self, signer: Address) -> Result<Outcome, ClientError> {
        Ok(self.chain.set_voucher_signer(signer).await?)
    }

    pub async fn escrow(&self, provider: Address) -> Result<EscrowAccount, ClientError> {
        Ok(self.chain.account(self.user(), provider).await?)
    }

    pub async fn summary(&self) -> Result<LedgerSummary, ClientError> {
        let user = self.user();
        let mut escrows = Vec::new();
        loop {
            let page = self
                .chain
                .accounts_of_user(user, escrows.len() as u64, 100)
                .await?;
            let got = page.items.len();
            escrows.extend(page.items.into_iter().map(EscrowView::from));
            if got == 0 || escrows.len() as u64 >= page.total {
                break;
            }
        }
        Ok(LedgerSummary {
            user,
            wallet: self.chain.native_balance(user).await?,
            balance: self.chain.balance_of(user).await?,
            escrows,
            voucher_signer: self.chain.voucher_signer(user).await?,
        })
    }
}
