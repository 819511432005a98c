//! Escrow top-up: when a provider answers `insufficient_escrow`, move a
//! fixed amount of the ledger into its escrow, within a budget for the
//! gateway's run, one top-up at a time.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};
use zg_chain::ChainClient;
use zg_client::{Accounts, ClientError};
use zg_core::{Address, U256, format_amount};

/// A top-up funds `amount` each time, `budget` in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopUpPolicy {
    pub amount: U256,
    pub budget: U256,
}

/// A top-up this recent makes a retry enough (another request just funded).
const FRESH: Duration = Duration::from_secs(3);

pub(crate) struct TopUp {
    policy: Option<TopUpPolicy>,
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    spent: U256,
    last: HashMap<Address, Instant>,
}

impl TopUp {
    pub(crate) fn new(policy: Option<TopUpPolicy>) -> Self {
        Self {
            policy,
            state: tokio::sync::Mutex::default(),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.policy.is_some()
    }

    /// Funds `provider`'s escrow, unless the budget is spent.
    pub(crate) async fn top_up(
        &self,
        chain: &ChainClient,
        provider: Address,
    ) -> Result<(), ClientError> {
        let Some(policy) = self.policy else {
            return Err(ClientError::Budget("escrow top-up is off".into()));
        };
        let mut state = self.state.lock().await;
        if state
            .last
            .get(&provider)
            .is_some_and(|t| t.elapsed() < FRESH)
        {
            return Ok(());
        }
        let after = state.spent.saturating_add(policy.amount);
        if after > policy.budget {
            return Err(ClientError::Budget(format!(
                "the gateway's top-up budget of {} 0G is spent ({} 0G used): fund provider {provider} yourself with `zg-serving user fund --provider {provider} --amount {}` or restart the gateway with a larger --topup-budget",
                format_amount(policy.budget),
                format_amount(state.spent),
                format_amount(policy.amount)
            )));
        }
        tracing::info!(%provider, amount = %format_amount(policy.amount), "topping up escrow");
        Accounts::new(chain.clone())
            .fund(provider, policy.amount)
            .await?;
        state.spent = after;
        state.last.insert(provider, Instant::now());
        Ok(())
    }
}
