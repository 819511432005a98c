//! `zg-serving chain set`: the owner-only settings of a deployment, sent
//! from the owner's keystore (lock period, minimum stake, verifiers and
//! their quorum, the dispute rules, owner).

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use zg_chain::DisputeRules;
use zg_core::{Address, format_amount, parse_amount};

use crate::{keys::PasswordArgs, network::DeploymentArgs, user::Out};

#[derive(Args)]
pub(super) struct SetArgs {
    #[command(flatten)]
    deployment: DeploymentArgs,
    /// Encrypted JSON keystore of the contract's owner.
    #[arg(long)]
    key_file: PathBuf,
    #[command(flatten)]
    password: PasswordArgs,
    /// New refund lock period, in seconds.
    #[arg(long)]
    lock_period: Option<u64>,
    /// New minimum provider stake, in 0G.
    #[arg(long)]
    min_stake: Option<String>,
    /// Register a verifier (may repeat): its signed verdicts decide disputes.
    #[arg(long)]
    add_verifier: Vec<Address>,
    /// Remove a registered verifier (may repeat).
    #[arg(long)]
    remove_verifier: Vec<Address>,
    /// Verdicts on one side that decide a dispute (1 ..= registered verifiers).
    #[arg(long)]
    quorum: Option<u32>,
    #[command(flatten)]
    rules: RuleArgs,
    /// Hand the owner's powers to this address (last, after the settings above).
    #[arg(long)]
    owner: Option<Address>,
}

/// The dispute rules; those not given keep their current value.
#[derive(Args)]
struct RuleArgs {
    /// Seconds after a receipt is issued in which it can be disputed.
    #[arg(long)]
    dispute_window: Option<u64>,
    /// Seconds verifiers have to reach quorum on a dispute.
    #[arg(long)]
    voting_period: Option<u64>,
    /// Seconds a stake stays slashable after its last service is removed (>= the window).
    #[arg(long)]
    unbonding_period: Option<u64>,
    /// The bond a challenger posts, in 0G.
    #[arg(long)]
    dispute_bond: Option<String>,
    /// Share of the stake a guilty verdict takes, in basis points (1 ..= 10000).
    #[arg(long)]
    slash_bps: Option<u16>,
    /// Share of the slash (after the user's refund) paid to the challenger, in basis points.
    #[arg(long)]
    reward_bps: Option<u16>,
}

impl RuleArgs {
    fn any(&self) -> bool {
        self.dispute_window.is_some()
            || self.voting_period.is_some()
            || self.unbonding_period.is_some()
            || self.dispute_bond.is_some()
            || self.slash_bps.is_some()
            || self.reward_bps.is_some()
    }

    fn apply(&self, mut rules: DisputeRules) -> Result<DisputeRules> {
        if let Some(bond) = &self.dispute_bond {
            rules.bond = parse_amount(bond).with_context(|| format!("--dispute-bond {bond:?}"))?;
        }
        rules.window = self.dispute_window.unwrap_or(rules.window);
        rules.voting_period = self.voting_period.unwrap_or(rules.voting_period);
        rules.unbonding_period = self.unbonding_period.unwrap_or(rules.unbonding_period);
        rules.slash_bps = self.slash_bps.unwrap_or(rules.slash_bps);
        rules.reward_bps = self.reward_bps.unwrap_or(rules.reward_bps);
        Ok(rules)
    }
}

pub(super) async fn run(args: SetArgs, out: Out) -> Result<()> {
    if args.lock_period.is_none()
        && args.min_stake.is_none()
        && args.owner.is_none()
        && args.add_verifier.is_empty()
        && args.remove_verifier.is_empty()
        && args.quorum.is_none()
        && !args.rules.any()
    {
        bail!(
            "nothing to set: pass --lock-period, --min-stake, --add-verifier, --remove-verifier, --quorum, a dispute rule (--dispute-window, --voting-period, --unbonding-period, --dispute-bond, --slash-bps, --reward-bps) or --owner"
        );
    }
    let min_stake = args
        .min_stake
        .as_deref()
        .map(|m| parse_amount(m).with_context(|| format!("--min-stake {m:?}")))
        .transpose()?;
    let key = args.password.unlock(&args.key_file)?;
    let chain = args.deployment.connect(&key.to_bytes()).await?;
    let owner = chain.owner().await?;
    if owner != key.address() {
        bail!(
            "{} is owned by {owner}, and {} holds the key of {}: only the owner changes its settings",
            chain.contract_address(),
            args.key_file.display(),
            key.address()
        );
    }
    let mut done = Vec::new();
    if let Some(seconds) = args.lock_period {
        let tx = chain.set_lock_period(seconds).await?.tx_hash;
        done.push((format!("lock period {seconds} s"), tx));
    }
    if let Some(amount) = min_stake {
        let tx = chain.set_min_stake(amount).await?.tx_hash;
        done.push((format!("min stake {} 0G", format_amount(amount)), tx));
    }
    for (verifiers, active) in [(&args.add_verifier, true), (&args.remove_verifier, false)] {
        for verifier in verifiers {
            let tx = chain.set_verifier(*verifier, active).await?.tx_hash;
            let verb = if active { "added" } else { "removed" };
            done.push((format!("verifier {verifier} {verb}"), tx));
        }
    }
    if let Some(quorum) = args.quorum {
        let tx = chain.set_quorum(quorum).await?.tx_hash;
        done.push((format!("quorum {quorum}"), tx));
    }
    if args.rules.any() {
        let rules = args.rules.apply(chain.dispute_rules().await?)?;
        let tx = chain.set_dispute_rules(rules).await?.tx_hash;
        done.push((
            format!(
                "dispute rules: window {} s, voting {} s, unbonding {} s, bond {} 0G, slash {} bps, reward {} bps",
                rules.window,
                rules.voting_period,
                rules.unbonding_period,
                format_amount(rules.bond),
                rules.slash_bps,
                rules.reward_bps
            ),
            tx,
        ));
    }
    if let Some(new_owner) = args.owner {
        let tx = chain.transfer_ownership(new_owner).await?.tx_hash;
        done.push((format!("owner {new_owner}"), tx));
    }
    out.print(
        json!(
            done.iter()
                .map(|(what, tx)| json!({ "set": what, "tx_hash": tx }))
                .collect::<Vec<_>>()
        ),
        || {
            done.iter()
                .map(|(what, tx)| format!("set {what} (tx {tx})"))
                .collect::<Vec<_>>()
                .join("\n")
        },
    );
    Ok(())
}
