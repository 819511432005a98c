//! `zg-serving chain set`: the owner-only settings of a deployment, sent
//! from the owner's keystore (lock period, minimum stake, owner).

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
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
    /// Hand the owner's powers to this address (last, after the settings above).
    #[arg(long)]
    owner: Option<Address>,
}

pub(super) async fn run(args: SetArgs, out: Out) -> Result<()> {
    if args.lock_period.is_none() && args.min_stake.is_none() && args.owner.is_none() {
        bail!("nothing to set: pass --lock-period, --min-stake or --owner");
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
