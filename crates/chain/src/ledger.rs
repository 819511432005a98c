//! The ledger: free balances that deposits fill and withdrawals empty.

use crate::{ChainClient, ChainError, Outcome};
use alloy::primitives::{Address, U256};

impl ChainClient {
    /// Adds `amount` neuron from the wallet to its ledger balance.
    pub async fn deposit(&self, amount: U256) -> Result<Outcome, ChainError> {
        let action = format!("depositing {amount} neuron");
        self.send(&action, self.contract().deposit().value(amount))
            .await
    }

    /// Sends `amount` neuron of the free ledger balance back to the wallet.
    pub async fn withdraw(&self, amount: U256) -> Result<Outcome, ChainError> {
        let action = format!("withdrawing {amount} neuron");
        self.send(&action, self.contract().withdraw(amount)).await
    }

    /// Free ledger balance of `who` (not counting escrow).
    pub async fn balance_of(&self, who: Address) -> Result<U256, ChainError> {
        self.view(
            &format!("reading the ledger balance of {who}"),
            self.contract().balanceOf(who),
        )
        .await
    }
}
