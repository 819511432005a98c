//! `zg-serving provider status`: services on chain, users with what they owe
//! and what is settled, and the provider's earnings on the ledger. The
//! figures are gathered once ([`Books::gather`]) for both the text report
//! and the provider page, so the two never disagree.

use std::{fmt::Write, future::Future, time::Duration};

use zg_chain::{ChainError, ProviderStake};
use zg_core::{Service, U256, format_amount};

use crate::{admission::Tab, broker::Broker, error::StartError, store::StoreError};

/// Services listed on chain read at most (one page of the registry).
const LISTED_MAX: u64 = 100;

impl Broker {
    /// A human-readable report of the broker's books; reads only.
    pub async fn status(&self) -> Result<String, StartError> {
        report(self, Books::gather(self).await)
    }
}

/// What the broker's books say, each part read on its own so that one
/// that failed (the chain down, the database down) leaves the others.
pub(crate) struct Books {
    pub(crate) stake: Result<ProviderStake, ChainError>,
    /// The provider's services as the registry lists them.
    pub(crate) listed: Result<Vec<Service>, ChainError>,
    /// Every user's tab, by address.
    pub(crate) tabs: Result<Vec<Tab>, StoreError>,
    /// The provider's balance on the ledger.
    pub(crate) earnings: Result<U256, ChainError>,
}

/// The sums over every user's tab.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) owed: U256,
    pub(crate) settled: U256,
    pub(crate) unsettled: U256,
}

impl Totals {
    pub(crate) fn of(tabs: &[Tab]) -> Self {
        tabs.iter().fold(Self::default(), |t, a| Self {
            owed: t.owed.saturating_add(a.owed),
            settled: t.settled.saturating_add(a.settled),
            unsettled: t.unsettled.saturating_add(a.unsettled()),
        })
    }
}

impl Books {
    /// Reads the chain and the store at once; a chain read that takes
    /// longer than `settlement.rpc_timeout_secs` counts as failed.
    pub(crate) async fn gather(broker: &Broker) -> Self {
        let chain = broker.chain.chain();
        let limit = Duration::from_secs(broker.config.settlement.rpc_timeout_secs);
        let (stake, listed, tabs, earnings) = tokio::join!(
            within(limit, "reading the stake", chain.stake_of(broker.provider)),
            within(
                limit,
                "listing the services",
                chain.services_of(broker.provider, 0, LISTED_MAX)
            ),
            broker.store.tabs(),
            within(
                limit,
                "reading the ledger balance",
                chain.balance_of(broker.provider)
            ),
        );
        Self {
            stake,
            listed: listed.map(|page| page.items),
            tabs,
            earnings,
        }
    }
}

/// `read`, or a chain error once `limit` passed without an answer.
pub(crate) async fn within<T>(
    limit: Duration,
    action: &str,
    read: impl Future<Output = Result<T, ChainError>>,
) -> Result<T, ChainError> {
    tokio::time::timeout(limit, read)
        .await
        .unwrap_or_else(|_| {
            Err(ChainError::Unexpected {
                action: action.to_owned(),
                reason: format!(
                    "no answer within {} s (settlement.rpc_timeout_secs); check that the chain node is up",
                    limit.as_secs()
                ),
            })
        })
}

fn report(broker: &Broker, books: Books) -> Result<String, StartError> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "provider {}  (chain {}, contract {})",
        broker.provider, broker.domain.chain_id, broker.domain.contract
    );
    let stake = books.stake?;
    let _ = writeln!(
        out,
        "stake {} 0G, {} services listed, {} disputes open{}",
        format_amount(stake.stake),
        stake.services,
        stake.open_disputes,
        match stake.unbond_at {
            0 => String::new(),
            at => format!(", unbonding: withdrawable after unix time {at}"),
        }
    );
    for s in books.listed? {
        let configured = broker.services.iter().any(|c| c.config.name == s.name);
        let _ = writeln!(
            out,
            "  service {:<24} {:<10} model {} ceilings input {} output {} cached {} neuron/token{}{}",
            s.name,
            s.kind,
            s.model,
            s.prices.input,
            s.prices.output,
            s.prices.cached,
            if configured { "" } else { "  (not in config)" },
            match s.failed_at {
                0 => String::new(),
                at => format!(
                    "  FAILED VERIFICATION at unix time {at}: skipped by clients until listed again with fresh stake"
                ),
            }
        );
    }
    let tabs = books.tabs?;
    let _ = writeln!(out, "users: {}", tabs.len());
    for a in &tabs {
        let _ = writeln!(
            out,
            "  {}  owed {} 0G  voucher {} 0G  settled {} 0G  in flight {} 0G",
            a.user,
            format_amount(a.owed),
            format_amount(a.cumulative()),
            format_amount(a.settled),
            format_amount(a.reserved)
        );
    }
    let totals = Totals::of(&tabs);
    let earnings = books.earnings?;
    let _ = writeln!(
        out,
        "owed {} 0G, settled {} 0G, unsettled vouchers {} 0G, earnings on the ledger {} 0G",
        format_amount(totals.owed),
        format_amount(totals.settled),
        format_amount(totals.unsettled),
        format_amount(earnings)
    );
    Ok(out)
}
