//! `zg-serving provider status`: services on chain, users with what they owe
//! and what is settled, and the provider's earnings on the ledger.

use std::fmt::Write;

use zg_core::{U256, format_amount};

use crate::{broker::Broker, error::StartError};

impl Broker {
    /// A human-readable report of the broker's books; reads only.
    pub async fn status(&self) -> Result<String, StartError> {
        report(self).await
    }
}

async fn report(broker: &Broker) -> Result<String, StartError> {
    let chain = broker.chain.chain();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "provider {}  (chain {}, contract {})",
        broker.provider, broker.domain.chain_id, broker.domain.contract
    );
    let stake = chain.stake_of(broker.provider).await?;
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
    let services = chain.services_of(broker.provider, 0, 100).await?;
    for s in services.items {
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
    let accounts = broker.store.tabs().await?;
    let (mut owed, mut settled, mut unsettled) = (U256::ZERO, U256::ZERO, U256::ZERO);
    let _ = writeln!(out, "users: {}", accounts.len());
    for a in &accounts {
        owed = owed.saturating_add(a.owed);
        settled = settled.saturating_add(a.settled);
        unsettled = unsettled.saturating_add(a.unsettled());
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
    let earnings = chain.balance_of(broker.provider).await?;
    let _ = writeln!(
        out,
        "owed {} 0G, settled {} 0G, unsettled vouchers {} 0G, earnings on the ledger {} 0G",
        format_amount(owed),
        format_amount(settled),
        format_amount(unsettled),
        format_amount(earnings)
    );
    Ok(out)
}
